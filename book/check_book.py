"""Open every page of the built book in a real browser and check that it is fit to publish.

    python book/check_book.py [--html-dir book/_build/html] [--screenshots book/_build/screenshots]

The site is served over http://127.0.0.1 (like a real host, not file://) and every page is
opened in headless chromium, driven by Playwright. A page passes when:

- its <title> holds the page's first heading and the book's title;
- every <img> has loaded (naturalWidth > 0);
- every maths element was typeset by MathJax, with no TeX error and no raw `$...$`, `$$`,
  `\\(` or `\\[` left in the visible text (code blocks excepted);
- every saved widget rendered, exactly once;
- the console shows no error, no script throws, no request fails or gets an HTTP error, and
  no request leaves 127.0.0.1 (those are blocked and reported: the book must work offline);
- every internal link points at a file of the site, and its #fragment at an id on that page.

A full-page screenshot of every page goes to the screenshots folder. The script prints a
table and exits 1 listing every failure. It never downloads a browser: it uses the system's
chromium (Debian: `apt-get install -y chromium`), or the one named by $CHROMIUM.
"""
from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urljoin, urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HTML = REPO_ROOT / "book" / "_build" / "html"
DEFAULT_SHOTS = REPO_ROOT / "book" / "_build" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
PAGE_TIMEOUT_MS = 30_000


# --------------------------------------------------------------------------- static parsing

@dataclass
class PageSource:
    """What the checker needs from a page's HTML file, before any script runs."""

    title: str = ""
    heading: str = ""  # text of the first <h1>, without its "#" permalink
    ids: set[str] = field(default_factory=set)
    links: list[str] = field(default_factory=list)  # href of every <a> and <link>
    assets: list[str] = field(default_factory=list)  # what the page loads: scripts, styles, images
    redirect: str | None = None  # target of a <meta http-equiv="refresh">


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
         "track", "wbr"}
# <link rel=...> values that make the browser fetch the href.
_LOADED_RELS = {"stylesheet", "preload", "modulepreload", "prefetch", "icon", "manifest"}


class _SourceParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = PageSource()
        self._in_title = False
        self._h1_depth = 0  # >0 while inside the first non-empty <h1>
        self._skip_depth = 0  # >0 inside the h1's permalink
        self._h1_done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        for key in ("id", "name") if tag == "a" else ("id",):
            if a.get(key):
                self.page.ids.add(a[key])
        if tag in ("a", "link") and "href" in a:
            self.page.links.append(a["href"])
        if tag in ("script", "img", "iframe", "source", "audio", "video", "embed") and a.get("src"):
            self.page.assets.append(a["src"])
        if tag == "link" and a.get("href") and set(a.get("rel", "").lower().split()) & _LOADED_RELS:
            self.page.assets.append(a["href"])
        if tag == "meta" and a.get("http-equiv", "").lower() == "refresh":
            m = re.search(r"url=(.+)$", a.get("content", ""), re.I)
            self.page.redirect = m.group(1).strip(" '\"") if m else None
        if tag == "title":
            self._in_title = True
        if self._h1_depth and tag not in _VOID:  # void tags never close
            self._h1_depth += 1
            if self._skip_depth or "headerlink" in a.get("class", "").split():
                self._skip_depth += 1
        elif tag == "h1" and not self._h1_done:
            self._h1_depth = 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if self._h1_depth and tag not in _VOID:
            self._h1_depth -= 1
            if self._skip_depth:
                self._skip_depth -= 1
            # The first h1 with text: the theme's print layout has an empty <h1></h1> first.
            if not self._h1_depth and self.page.heading.strip():
                self._h1_done = True

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.page.title += data
        elif self._h1_depth and not self._skip_depth:
            self.page.heading += data


def parse_page(path: Path) -> PageSource:
    parser = _SourceParser()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    page = parser.page
    page.title = _norm(page.title)
    page.heading = _norm(page.heading)
    return page


def _norm(text: str) -> str:
    """Collapse whitespace and drop maths delimiters, so headings compare with titles."""
    text = re.sub(r"\\[()\[\]]|\$", "", text)
    return re.sub(r"\s+", " ", text).strip()


def list_pages(html_dir: Path) -> list[str]:
    """Every .html page of the site, as a posix path relative to html_dir.

    Folders whose name starts with "_" hold assets (_static, _sources, _vendor, _images)."""
    pages = []
    for path in sorted(html_dir.rglob("*.html")):
        rel = path.relative_to(html_dir)
        if not any(part.startswith("_") for part in rel.parts[:-1]):
            pages.append(rel.as_posix())
    return pages


def check_links(html_dir: Path, pages: list[str]) -> dict[str, list[str]]:
    """Internal links that point nowhere (missing files and #fragments), and assets that are
    missing or would come from another host, per page. Static, so it also covers what the
    browser only loads on demand."""
    sources: dict[str, PageSource] = {}

    def source(rel: str) -> PageSource:
        if rel not in sources:
            sources[rel] = parse_page(html_dir / rel)
        return sources[rel]

    base = "http://site.invalid/"
    failures: dict[str, list[str]] = {}
    for rel in pages:
        page = source(rel)
        hrefs = list(page.links) + ([page.redirect] if page.redirect else [])
        for href in hrefs:
            url = urlsplit(urljoin(base + rel, href))
            if url.scheme in ("http", "https") and url.netloc != "site.invalid":
                continue  # external links are allowed; they are never loaded by the check
            if url.scheme not in ("http", "https"):
                continue  # mailto:, javascript:, data:
            target = unquote(url.path[1:]) or "index.html"
            if target.endswith("/"):
                target += "index.html"
            path = html_dir / target
            if not path.is_file():
                failures.setdefault(rel, []).append(f"broken link {href!r}: no file {target}")
            elif url.fragment and target.endswith(".html"):
                if unquote(url.fragment) not in source(target).ids:
                    failures.setdefault(rel, []).append(
                        f"broken link {href!r}: no id {url.fragment!r} in {target}")
        for src in page.assets:
            url = urlsplit(urljoin(base + rel, src))
            if url.scheme in ("http", "https") and url.netloc != "site.invalid":
                failures.setdefault(rel, []).append(f"loads an asset from another host: {src}")
            elif url.scheme in ("http", "https"):
                target = unquote(url.path[1:])
                if not (html_dir / target).is_file():
                    failures.setdefault(rel, []).append(f"missing asset {src!r}: no file {target}")
    return failures


# --------------------------------------------------------------------------- serving

class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass


@contextmanager
def serve(html_dir: Path) -> Iterator[str]:
    """Serve html_dir on a free port of 127.0.0.1 from a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- browser

def find_chromium() -> str:
    """The system chromium: $CHROMIUM, else the first of the usual names on PATH."""
    candidates = [os.environ.get("CHROMIUM", "")] + [
        shutil.which(n) or "" for n in ("chromium", "chromium-browser", "google-chrome")]
    for c in candidates:
        if c and Path(c).is_file():
            return c
    raise SystemExit(
        "check_book: no chromium found. Install the system browser (Debian/Ubuntu: "
        "`apt-get install -y chromium`) or set CHROMIUM=/path/to/chrome. "
        "(Do not run `playwright install`: the check uses the system browser.)")


# Runs in the page once it has loaded; returns everything the Python side checks.
_INSPECT_JS = r"""
async () => {
  const sleep = (ms) => new Promise(r => setTimeout(r, ms));
  // MathJax typesets after load; wait for it to finish.
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  // Widgets are rendered by embed-amd.js on the load event: one .widget-subarea is inserted
  // before each widget-view <script>. Wait (up to 15 s) for all of them to have content.
  const views = [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')];
  const rendered = (s) => { const p = s.previousElementSibling;
    return !!p && p.classList.contains('widget-subarea') && p.children.length > 0; };
  // Without the manager script nothing will ever render them: do not wait in vain.
  const manager = document.querySelector('script[src*="embed-amd"]');
  for (let i = 0; manager && i < 150 && !views.every(rendered); i++) await sleep(100);
  // A view's copies are the .widget-subarea elements directly in front of its own <script>
  // (a cell may hold several widgets side by side, each with its own subarea).
  const copiesOf = (s) => { let n = 0;
    for (let e = s.previousElementSibling; e && e.classList.contains('widget-subarea'); e = e.previousElementSibling) n++;
    return n; };
  const widgets = views.map(s => ({
    rendered: rendered(s),
    copies: copiesOf(s),
  }));
  // Images: make lazy ones load now, then wait for every image to settle.
  const imgs = [...document.images];
  imgs.forEach(img => { if (img.loading === 'lazy') img.loading = 'eager'; });
  await Promise.all(imgs.map(img => img.complete ? null : new Promise(r => {
    img.addEventListener('load', r); img.addEventListener('error', r); setTimeout(r, 10000); })));
  const badImages = imgs.filter(img => !(img.complete && img.naturalWidth > 0))
                        .map(img => img.getAttribute('src'));
  // Maths: every Sphinx maths element must hold MathJax output, without TeX errors.
  const mathEls = [...document.querySelectorAll('span.math, div.math')];
  const untypeset = mathEls.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.trim().slice(0, 60));
  const mathErrors = [...document.querySelectorAll('mjx-merror')].map(e => e.textContent.slice(0, 60));
  // Raw TeX left in the visible prose (code, outputs and typeset maths excluded).
  const body = document.body.cloneNode(true);
  body.querySelectorAll('pre, code, script, style, textarea, mjx-container, .highlight, [hidden]').forEach(e => e.remove());
  const text = body.textContent.replace(/\s+/g, ' ');
  const raw = [];
  for (const re of [/\$\$/g, /\\\(/g, /\\\[/g, /\$[^\s$][^$]{0,200}?\$/g]) {
    for (const m of text.matchAll(re)) {
      raw.push(text.slice(Math.max(0, m.index - 30), m.index + 40).trim());
      if (raw.length > 5) break;
    }
  }
  return {
    title: document.title,
    images: imgs.length, badImages,
    maths: mathEls.length, untypeset, mathErrors, raw,
    widgets,
  };
}
"""


@dataclass
class PageResult:
    page: str
    title: str = ""
    images: str = "-"
    maths: str = "-"
    widgets: str = "-"
    failures: list[str] = field(default_factory=list)


def check_page(context, base_url: str, rel: str, html_dir: Path, shots: Path,
               book_title: str) -> PageResult:
    """Open one page and run every browser-side check on it."""
    result = PageResult(rel)
    src = parse_page(html_dir / rel)
    if src.redirect:
        # e.g. index.html, a bare redirect to the root page: its link is checked with the others.
        result.title = f"(redirect to {src.redirect})"
        return result
    fail = result.failures.append
    page = context.new_page()
    page.on("console", lambda m: fail(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: fail(f"script error: {e}"))
    page.on("requestfailed", lambda r: None if urlsplit(r.url).hostname not in LOCAL_HOSTS
            else fail(f"request failed: {r.url} ({r.failure})"))
    page.on("response", lambda r: fail(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    try:
        page.goto(base_url + rel, wait_until="load", timeout=PAGE_TIMEOUT_MS)
        info = page.evaluate(_INSPECT_JS)
        page.wait_for_load_state("networkidle", timeout=PAGE_TIMEOUT_MS)
        shot = shots / (rel.replace("/", "__").removesuffix(".html") + ".png")
        page.screenshot(path=str(shot), full_page=True)
    except Exception as exc:  # a page that hangs or crashes is a failure, not a crash of the check
        fail(f"could not load/inspect: {type(exc).__name__}: {exc}")
        page.close()
        return result
    page.close()

    result.title = info["title"]
    title = _norm(info["title"])
    if book_title not in title:
        fail(f"title {info['title']!r} lacks the book title {book_title!r}")
    if not src.heading:
        fail("page has no <h1> heading")
    elif src.heading not in title:
        fail(f"title {info['title']!r} lacks the page heading {src.heading!r}")
    n_img = info["images"]
    result.images = f"{n_img - len(info['badImages'])}/{n_img}"
    for s in info["badImages"]:
        fail(f"image did not load: {s}")
    n_math = info["maths"]
    result.maths = f"{n_math - len(info['untypeset'])}/{n_math}"
    for s in info["untypeset"]:
        fail(f"maths not typeset: {s!r}")
    for s in info["mathErrors"]:
        fail(f"TeX error in maths: {s!r}")
    for s in info["raw"]:
        fail(f"raw TeX in visible text: ...{s}...")
    ws = info["widgets"]
    result.widgets = f"{sum(w['rendered'] for w in ws)}/{len(ws)}"
    for i, w in enumerate(ws):
        if not w["rendered"]:
            fail(f"widget {i} did not render")
        elif w["copies"] > 1:
            fail(f"widget {i} rendered {w['copies']} times")
    return result


def run_checks(html_dir: Path, shots: Path, book_title: str,
               pages: list[str] | None = None) -> list[PageResult]:
    """Check every page (or `pages`) of the site in html_dir; returns one result per page."""
    from playwright.sync_api import sync_playwright  # imported here: the parsing needs no browser

    html_dir = html_dir.resolve()
    if not (html_dir / "index.html").is_file():
        raise SystemExit(f"check_book: {html_dir} has no index.html; build the book first with `make book`.")
    pages = pages if pages is not None else list_pages(html_dir)
    shots.mkdir(parents=True, exist_ok=True)
    link_failures = check_links(html_dir, pages)
    results = []
    with serve(html_dir) as base_url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
        external: list[str] = []

        def route(r) -> None:
            # Anything that is not this site is blocked and reported: the book must be offline-proof.
            url = urlsplit(r.request.url)
            if url.scheme in ("http", "https", "ws", "wss") and url.hostname not in LOCAL_HOSTS:
                external.append(r.request.url)
                r.abort()
            else:
                r.continue_()

        context.route("**/*", route)
        for rel in pages:
            external.clear()
            res = check_page(context, base_url, rel, html_dir, shots, book_title)
            res.failures.extend(f"request to another host (blocked): {u}" for u in external)
            res.failures.extend(link_failures.get(rel, []))
            res.failures = list(dict.fromkeys(res.failures))  # a resource retried is one fault
            results.append(res)
        browser.close()
    return results


def book_title_from_config(config: Path) -> str:
    import yaml

    return _norm(yaml.safe_load(config.read_text())["title"])


def report(results: list[PageResult]) -> int:
    """Print the summary table and the failures; returns the exit status."""
    rows = [("page", "title", "images", "maths", "widgets", "errors")]
    rows += [(r.page, r.title[:60], r.images, r.maths, r.widgets, str(len(r.failures))) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    failed = [r for r in results if r.failures]
    if failed:
        print(f"\n{sum(len(r.failures) for r in failed)} failure(s) on {len(failed)} of {len(results)} page(s):")
        for r in failed:
            for f in r.failures:
                print(f"  {r.page}: {f}")
        return 1
    print(f"\nAll {len(results)} pages passed.")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--html-dir", type=Path, default=DEFAULT_HTML)
    ap.add_argument("--screenshots", type=Path, default=DEFAULT_SHOTS)
    ap.add_argument("--config", type=Path, default=REPO_ROOT / "book" / "_config.yml",
                    help="the book's _config.yml, for its title")
    ap.add_argument("--book-title", help="override the title read from --config")
    args = ap.parse_args(argv)
    title = _norm(args.book_title) if args.book_title else book_title_from_config(args.config)
    results = run_checks(args.html_dir, args.screenshots, title)
    print(f"Checked {len(results)} pages of {args.html_dir}; screenshots in {args.screenshots}\n")
    return report(results)


if __name__ == "__main__":
    sys.exit(main())
