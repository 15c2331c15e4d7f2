"""pytest plugin for the checks of the built book: fixtures, and the helpers no library has.

Loaded with `pytest_plugins = ["book_pages_plugin"]` by tests/test_book_pages.py (the checks of
the real site, book/_build/html) and tests/test_book.py (the same checks on a tiny site written
in tmp_path, to prove that they catch what they claim to catch).

- The browser is pytest-playwright's (`browser`, `page`): the system chromium ($CHROMIUM, else
  /usr/bin/chromium or one on PATH) through `browser_type_launch_args`. Playwright's own browser
  download (`playwright install`) is never needed.
- The site is served over http://127.0.0.1 (like a real host, not file://) by `serve()`.
- `check_page()` opens one page and returns its faults; the MathJax and widget inspection runs in
  the page (_INSPECT_JS).
- `check_links()` runs linkchecker over the served site: every internal link must reach a file,
  and its #fragment an id on that page (the AnchorCheck plugin). External URLs are never fetched.

The built-site tests (tests/test_book_pages.py) are slow and need `make book` first, so they
run only when the command line names that file (as `make book-test` does). A run over the whole
tests/ folder (`make test`'s pytest pass, which comes after `make book-test`) deselects them, so
they never run twice.

(This module has no assert statements of its own, so pytest need not rewrite it:
PYTEST_DONT_REWRITE.)
"""
from __future__ import annotations

import csv
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "book" / "_config.yml"
# The built site; VITBOOK_HTML points the checks at another copy (screenshots go beside it).
HTML_DIR = Path(os.environ.get("VITBOOK_HTML") or REPO / "book" / "_build" / "html").resolve()
SHOTS_DIR = HTML_DIR.parent / "screenshots"
PAGES_MODULE = Path(__file__).resolve().with_name("test_book_pages.py")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
PAGE_TIMEOUT_MS = 30_000


def no_book_message(html_dir: Path = HTML_DIR) -> str:
    where = html_dir.relative_to(REPO) if html_dir.is_relative_to(REPO) else html_dir
    return f"no built book in {where.as_posix()}: run `make book` first"


# --------------------------------------------------------------------------- pytest hooks

_DESELECTED = pytest.StashKey[int]()


def _names_pages_module(config: pytest.Config) -> bool:
    """Whether the command line names tests/test_book_pages.py (or a test in it)."""
    here = Path(config.invocation_params.dir)
    return any((here / arg.split("::")[0]).resolve() == PAGES_MODULE for arg in config.args)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the built-site tests unless the command line names their file."""
    if _names_pages_module(config):
        return
    site = [i for i in items if i.path == PAGES_MODULE]
    if site:
        config.hook.pytest_deselected(items=site)
        items[:] = [i for i in items if i.path != PAGES_MODULE]
        config.stash[_DESELECTED] = len(site)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    if config.stash.get(_DESELECTED, 0):
        terminalreporter.write_line(
            f"{config.stash[_DESELECTED]} checks of the built book deselected: `make book-test` "
            "runs them (or name tests/test_book_pages.py).")


# --------------------------------------------------------------------------- fixtures

def find_chromium() -> str | None:
    """The system chromium: $CHROMIUM, else /usr/bin/chromium or the first usual name on PATH."""
    candidates = [os.environ.get("CHROMIUM", ""), "/usr/bin/chromium"] + [
        shutil.which(n) or "" for n in ("chromium", "chromium-browser", "google-chrome")]
    return next((c for c in candidates if c and Path(c).is_file()), None)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """pytest-playwright's launch options, with the system chromium and our flags."""
    chromium = find_chromium()
    if chromium is None:
        pytest.fail("no chromium found: install the system browser (Debian/Ubuntu: `apt-get "
                    "install -y chromium`) or set CHROMIUM=/path/to/chrome (never `playwright "
                    "install`: the checks use the system browser)", pytrace=False)
    return {**browser_type_launch_args, "executable_path": chromium, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    """A desktop viewport; no service workers (they could serve a page from a cache)."""
    return {**browser_context_args, "viewport": {"width": 1280, "height": 900},
            "service_workers": "block"}


@dataclass
class Site:
    html_dir: Path
    url: str  # base URL, ends with "/"


@pytest.fixture(scope="session")
def book_site() -> Iterator[Site | None]:
    """The built book, served on 127.0.0.1; None when it is not built (the tests then fail)."""
    if not (HTML_DIR / "index.html").is_file():
        yield None
        return
    with serve(HTML_DIR) as url:
        yield Site(HTML_DIR, url)


def require(site: Site | None) -> Site:
    """Fail the calling test, in one line, when the book is not built."""
    if site is None:
        pytest.fail(no_book_message(), pytrace=False)
    return site


@pytest.fixture(scope="session")
def book_title() -> str:
    import yaml

    return norm(yaml.safe_load(CONFIG.read_text())["title"])


# --------------------------------------------------------------------------- the site

class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def end_headers(self) -> None:
        # Tells linkchecker that this host may be checked at full speed: without it, linkchecker
        # waits 0.1-0.6 s before every request to a host.
        self.send_header("LinkChecker", "local")
        super().end_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up early
            super().handle_error(request, client_address)


@contextmanager
def serve(html_dir: Path) -> Iterator[str]:
    """Serve html_dir on a free port of 127.0.0.1 from a thread; yields the base URL."""
    handler = functools.partial(_Handler, directory=str(html_dir))
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def list_pages(html_dir: Path) -> list[str]:
    """Every .html page of the site, as a posix path relative to html_dir.

    Folders whose name starts with "_" hold assets (_static, _sources, _vendor, _images)."""
    if not html_dir.is_dir():
        return []
    return [p.relative_to(html_dir).as_posix() for p in sorted(html_dir.rglob("*.html"))
            if not any(part.startswith("_") for part in p.relative_to(html_dir).parts[:-1])]


def norm(text: str) -> str:
    """Collapse whitespace and drop maths delimiters, so headings compare with titles."""
    text = re.sub(r"\\[()\[\]]|\$", "", text)
    return re.sub(r"\s+", " ", text).strip()


@dataclass
class PageSource:
    """What the checks need from a page's HTML file, before any script runs."""

    title: str = ""
    heading: str = ""  # the first non-empty <h1>, without its "#" permalink
    redirect: str | None = None  # target of a <meta http-equiv="refresh">


def parse_page(path: Path) -> PageSource:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(path.read_text(encoding="utf-8", errors="replace"), "html.parser")
    page = PageSource(title=norm(soup.title.get_text()) if soup.title else "")
    # The first h1 with text: the theme's print layout has an empty <h1></h1> first.
    for h1 in soup.find_all("h1"):
        for permalink in h1.select(".headerlink"):
            permalink.decompose()
        if heading := norm(h1.get_text()):
            page.heading = heading
            break
    meta = soup.find("meta", attrs={"http-equiv": re.compile("^refresh$", re.I)})
    if meta is not None:
        m = re.search(r"url=(.+)$", meta.get("content", ""), re.I)
        page.redirect = m.group(1).strip(" '\"") if m else None
    return page


# --------------------------------------------------------------------------- one page

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
  // Loaded images with their alt text and the width they are drawn at (0: hidden).
  const shown = imgs.filter(img => img.complete && img.naturalWidth > 0)
                    .map(img => ({alt: img.getAttribute('alt') || '', width: img.getBoundingClientRect().width}));
  // What the page would load from another host, also on demand (the browser reports what it did).
  const loaded = new Set(['stylesheet', 'preload', 'modulepreload', 'prefetch', 'icon', 'manifest']);
  const assets = [...document.querySelectorAll('script[src], img[src], iframe[src], source[src], audio[src], video[src], embed[src]')]
    .map(e => [e.getAttribute('src'), e.src])
    .concat([...document.querySelectorAll('link[href]')]
      .filter(e => (e.getAttribute('rel') || '').toLowerCase().split(/\s+/).some(r => loaded.has(r)))
      .map(e => [e.getAttribute('href'), e.href]));
  const foreign = assets.filter(([_, abs]) => { try { const u = new URL(abs);
      return /^(https?|wss?):$/.test(u.protocol) && u.hostname !== location.hostname; }
    catch (e) { return false; } }).map(([attr, _]) => attr);
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
    images: imgs.length, badImages, shown, foreign,
    maths: mathEls.length, untypeset, mathErrors, raw,
    widgets,
  };
}
"""


@dataclass
class PageCheck:
    """What check_page saw on one page: its faults, and how much it looked at."""

    failures: list[str] = field(default_factory=list)
    images: int = 0
    shown: list = field(default_factory=list)  # loaded images: {"alt", "width"} (drawn width, px)
    maths: int = 0
    widgets: int = 0


def check_page(page, url: str, heading: str, book_title: str, screenshot: Path) -> PageCheck:
    """Open url in a (fresh) Playwright page, check it, and save a full-page screenshot.

    A page passes when its <title> holds `heading` and `book_title`; every <img> loaded; every
    maths element was typeset by MathJax, with no TeX error and no raw `$...$`, `$$`, `\\(` or
    `\\[` left in the visible text (code excepted); every saved widget rendered exactly once;
    the console shows no error, no script throws, no request fails or gets an HTTP error; and
    nothing comes from another host (such requests are blocked and reported: the book must
    work offline)."""
    result = PageCheck()
    fail = result.failures.append
    external: list[str] = []

    def route(r) -> None:
        target = urlsplit(r.request.url)
        if target.scheme in ("http", "https", "ws", "wss") and target.hostname not in LOCAL_HOSTS:
            external.append(r.request.url)
            r.abort()
        else:
            r.continue_()

    page.context.route("**/*", route)
    page.on("console", lambda m: fail(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: fail(f"script error: {e}"))
    page.on("requestfailed", lambda r: None if urlsplit(r.url).hostname not in LOCAL_HOSTS
            else fail(f"request failed: {r.url} ({r.failure})"))
    page.on("response", lambda r: fail(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    try:
        page.goto(url, wait_until="load", timeout=PAGE_TIMEOUT_MS)
        info = page.evaluate(_INSPECT_JS)
        page.wait_for_load_state("networkidle", timeout=PAGE_TIMEOUT_MS)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
    except Exception as exc:  # a page that hangs or crashes is a fault, reported with the rest
        fail(f"could not load/inspect: {type(exc).__name__}: {exc}")
        info = None

    if info is not None:
        title = norm(info["title"])
        if book_title not in title:
            fail(f"title {info['title']!r} lacks the book title {book_title!r}")
        if not heading:
            fail("page has no <h1> heading")
        elif heading not in title:
            fail(f"title {info['title']!r} lacks the page heading {heading!r}")
        result.images, result.maths, result.widgets = (
            info["images"], info["maths"], len(info["widgets"]))
        result.shown = info["shown"]
        for s in info["badImages"]:
            fail(f"image did not load: {s}")
        for s in info["foreign"]:
            fail(f"loads an asset from another host: {s}")
        for s in info["untypeset"]:
            fail(f"maths not typeset: {s!r}")
        for s in info["mathErrors"]:
            fail(f"TeX error in maths: {s!r}")
        for s in info["raw"]:
            fail(f"raw TeX in visible text: ...{s}...")
        for i, w in enumerate(info["widgets"]):
            if not w["rendered"]:
                fail(f"widget {i} did not render")
            elif w["copies"] > 1:
                fail(f"widget {i} rendered {w['copies']} times")
    result.failures.extend(f"request to another host (blocked): {u}" for u in external)
    result.failures[:] = dict.fromkeys(result.failures)  # a resource retried is one fault
    return result


# --------------------------------------------------------------------------- links

# linkchecker's configuration: only this file is read (never the user's ~/.config/linkchecker).
_LINKCHECKER_RC = """\
[checking]
threads=4
timeout=30
# The local server sends a `LinkChecker` header, which allows more than 10 requests a second.
maxrequestspersecond=1000
robotstxt=0
[filtering]
# Links to other hosts are allowed and never fetched (only their syntax is checked).
checkextern=0
internlinks={intern}
[output]
warnings=1
[csv]
separator=;
# Every #fragment must be an id (or <a name>) on the page it points to.
[AnchorCheck]
"""


def check_links(base_url: str, pages: list[str]) -> list[str]:
    """Broken internal links of the site at base_url, found by linkchecker from every page.

    Returns one line per broken link: a link (or asset: scripts, styles, images) to a file the
    site lacks, or a #fragment that is no id on its page. linkchecker checks each URL once, so a
    broken URL is listed with the first page found linking to it. Run as a subprocess: as root,
    linkchecker drops its privileges to `nobody`, which is why the site is read over HTTP."""
    with tempfile.TemporaryDirectory(prefix="linkchecker-") as tmp:
        rc = Path(tmp) / "linkcheckerrc"
        rc.write_text(_LINKCHECKER_RC.format(intern="^" + re.escape(base_url)))
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env.update(XDG_CONFIG_HOME=tmp, XDG_DATA_HOME=tmp, NO_PROXY="127.0.0.1,localhost")
        cmd = [sys.executable, "-m", "linkcheck", "--config", str(rc), "--no-status",
               "--output", "csv/utf-8", *(base_url + p for p in pages)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode not in (0, 1):  # 1: broken links found; anything else: it did not run
        raise RuntimeError(f"linkchecker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rows = csv.DictReader((line for line in proc.stdout.splitlines() if not line.startswith("#")),
                          delimiter=";")
    broken = []
    for row in rows:
        where = row["parentname"].removeprefix(base_url) or "(start)"
        target = row["url"].removeprefix(base_url)
        if row["valid"] != "True":
            broken.append(f"{where}: broken link {row['urlname']!r} -> {target}: {row['result']}")
        for warning in filter(None, row["warningstring"].splitlines()):
            # "Anchor `x' (decoded: `x') not found. Available anchors: ..." - the list can be long.
            warning = warning.split(" Available anchors:")[0]
            broken.append(f"{where}: broken link {row['urlname']!r} -> {target}: {warning}")
    if proc.returncode == 1 and not broken:
        raise RuntimeError(f"linkchecker exited 1 with no broken link in its report:\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return sorted(dict.fromkeys(broken))
