"""Tests for the book's build helpers and its checks.

Building the real book takes minutes, so it is not done here: `make book` builds it and
`make book-test` checks every page (tests/test_book_pages.py). These tests make sure those
checks catch what they claim to catch (on a tiny site written here, in a real headless chromium,
and with linkchecker), that the build helper vendors the pinned npm packages and drops stale
notebook outputs, and that the book's configuration is the offline, strict, cached one the
build relies on.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import book_pages_plugin as checks  # tests/, on sys.path under pytest

pytest_plugins = ["book_pages_plugin"]

REPO = Path(__file__).resolve().parent.parent
BOOK = REPO / "book"
CHAPTERS = ["01_dataset", "02_patch_embedding", "03_attention", "04_vit", "05_training",
            "06_interpretation", "07_vit_vs_cnn"]
APPENDICES = ["u1_data_pipeline", "u2_training_machinery", "u3_porting_and_resizing"]  # "Under the hood"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"book_{name}", BOOK / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


prebuild = _load("prebuild")


# --------------------------------------------------------------------------- configuration

def test_toc_lists_every_notebook_and_the_book_pages():
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert [f for f in files if f.startswith("notebooks/")] == [f"notebooks/{c}" for c in CHAPTERS + APPENDICES]
    # every paired notebook in notebooks/ is in the book
    assert sorted(p.stem for p in (REPO / "notebooks").glob("*.py")) == sorted(CHAPTERS + APPENDICES)
    for page in [toc["root"]] + [f for f in files if f.startswith("book/")]:
        assert (REPO / f"{page}.md").is_file(), f"{page}.md is in the toc but missing"


def test_config_executes_with_cache_and_loads_nothing_from_a_cdn():
    cfg = yaml.safe_load((BOOK / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "cache"
    assert cfg["execute"]["allow_errors"] is False
    assert cfg["only_build_toc_files"] is True
    sphinx = cfg["sphinx"]["config"]
    scripts = [sphinx["mathjax_path"], *sphinx["nb_ipywidgets_js"]]
    assert all("://" not in s and s.startswith("../_vendor/") for s in scripts), scripts
    # Every vendored script the config names is one that prebuild.py puts in place.
    provided = {"mathjax": "mathjax/es5/tex-chtml-full.js", "html-manager": "html-manager/embed-amd.js",
                "requirejs": "requirejs/require.js"}
    assert set(provided) == set(prebuild.PACKAGES)
    own = {f"vitbook/{p.name}" for p in (BOOK / "assets").iterdir()}
    assert {s.removeprefix("../_vendor/") for s in scripts} <= set(provided.values()) | own
    # Widget JavaScript must not sit in a _static folder (Jupyter Book would load it twice).
    # (The built site's own _static, under _build, holds Sphinx's scripts and is not a source;
    # node_modules is npm's, and only the files prebuild.py copies from it reach the site.)
    static_js = [Path(d) / f for d, dirs, files in os.walk(BOOK)
                 if not dirs.__setitem__(slice(None), [x for x in dirs if x not in ("_build", "node_modules")])
                 for f in files if f.endswith(".js") and "_static" in Path(d).relative_to(BOOK).parts]
    assert not static_js


def test_make_book_builds_strictly_in_quick_mode():
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^book: .*?(?=^\S)", makefile, re.S | re.M).group(0)
    for needle in ("$(STAMP)", "book/prebuild.py", "VITLIB_QUICK=1", "jupyter-book build .",
                   "--config book/_config.yml", "--toc book/_toc.yml", "--path-output book",
                   " -W", " -n", "--keep-going"):
        assert needle in recipe, f"`make book` lacks {needle!r}"
    # `make book-test` builds the book, then runs the page and link checks by naming their file
    # (which is what makes them run: a pytest run over all of tests/ deselects them).
    assert re.search(r"^book-test: book\n\t\$\(BIN\)/python -m pytest .*tests/test_book_pages\.py$",
                     makefile, re.M)


# --------------------------------------------------------------------------- prebuild.py

def test_package_json_pins_the_vendored_packages_and_the_lock_has_their_integrity():
    package = json.loads((BOOK / "package.json").read_text())
    lock = json.loads((BOOK / "package-lock.json").read_text())
    deps = package["dependencies"]
    # Exactly the packages prebuild.py copies from, each at one exact version (no ^ or ~): the
    # pages were checked against these files, and _config.yml names paths inside them.
    assert set(deps) == {npm_name for npm_name, _ in prebuild.PACKAGES.values()}
    assert deps == {"mathjax": "3.2.2", "@jupyter-widgets/html-manager": "1.0.15",
                    "requirejs": "2.3.8"}
    assert not package.get("devDependencies")
    # The lock file is npm's (made by `npm install`, read by `npm ci`), in step with package.json.
    assert lock["lockfileVersion"] >= 2 and lock["packages"][""]["dependencies"] == deps
    for name, version in deps.items():
        entry = lock["packages"][f"node_modules/{name}"]
        assert entry["version"] == version
        assert re.fullmatch(r"sha512-[A-Za-z0-9+/]{86}==", entry["integrity"]), entry
    # Every package npm installs is locked by an integrity hash, not only the three we copy from.
    assert all(e.get("integrity", "").startswith("sha512-")
               for path, e in lock["packages"].items() if path and not e.get("link"))


def test_node_modules_and_the_built_site_stay_out_of_git():
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert "book/node_modules/" in ignored and "book/_build/" in ignored


def _fake_package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_copy_package_copies_only_the_mapped_files(tmp_path):
    pkg = _fake_package(tmp_path / "node_modules" / "@jupyter-widgets" / "html-manager", {
        "dist/embed-amd.js": "js", "dist/embed-amd.js.map": "map", "dist/embed.js": "cjs",
        "dist/libembed-amd.js": "lib", "dist/embed.js.LICENSE.txt": "L", "dist/font.woff2": "font",
        "dist/sub/icon.svg": "svg", "src/x.ts": "ts", "package.json": "{}", "README.md": "r"})
    out = tmp_path / "out"
    n = prebuild.copy_package(pkg, {"dist/": "", "package.json": "package.json"}, out)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert n == 4 and files == ["embed-amd.js", "font.woff2", "package.json", "sub/icon.svg"]
    assert (out / "sub" / "icon.svg").read_text() == "svg"
    # A mapped file the installed version lacks is an error, not a silently missing script.
    with pytest.raises(SystemExit, match="require.js is missing"):
        prebuild.copy_package(pkg, {"require.js": "require.js"}, tmp_path / "out2")


def test_npm_ci_runs_only_when_the_lock_file_changed(tmp_path, monkeypatch):
    book = tmp_path / "book"
    book.mkdir()
    (book / "package-lock.json").write_text('{"lockfileVersion": 3}')
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        for package, _ in prebuild.PACKAGES.values():
            _fake_package(book / "node_modules" / package, {"package.json": "{}"})
        return SimpleNamespace(returncode=0)

    monkeypatch.setattr(prebuild.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(prebuild.subprocess, "run", fake_run)
    assert prebuild.npm_ci(book) is True
    assert calls == [["/usr/bin/npm", "ci", "--prefix", str(book), "--no-audit", "--no-fund",
                      "--ignore-scripts"]]
    assert prebuild.npm_ci(book) is False and len(calls) == 1  # same lock: nothing to do
    (book / "package-lock.json").write_text('{"lockfileVersion": 3, "packages": {}}')
    assert prebuild.npm_ci(book) is True and len(calls) == 2  # a new lock: install again
    (book / "node_modules" / "requirejs" / "package.json").unlink()
    assert prebuild.npm_ci(book) is True and len(calls) == 3  # a package gone: install again

    # A failed install leaves no stamp behind, so the next build installs again.
    (book / "package-lock.json").write_text("{}")
    monkeypatch.setattr(prebuild.subprocess, "run",
                        lambda cmd, **kw: calls.append(cmd) or SimpleNamespace(returncode=1))
    for _ in range(2):
        with pytest.raises(SystemExit, match="`npm ci` failed"):
            prebuild.npm_ci(book)
    assert len(calls) == 5
    monkeypatch.setattr(prebuild.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="`npm` was not found"):
        prebuild.npm_ci(book)


def test_vendor_copies_each_package_once_into_its_folder(tmp_path, monkeypatch):
    nm = tmp_path / "book" / "node_modules"
    nm.mkdir(parents=True)
    (nm / prebuild.NPM_STAMP).write_text("lock-hash\n")
    _fake_package(nm / "mathjax", {"es5/tex-chtml-full.js": "mj", "es5/output/chtml/fonts/a.js": "f",
                                   "LICENSE": "A", "package.json": '{"version": "3.2.2"}'})
    _fake_package(nm / "@jupyter-widgets" / "html-manager", {
        "dist/embed-amd.js": "em", "dist/embed-amd.js.map": "m", "package.json": '{"version": "1"}'})
    _fake_package(nm / "requirejs", {"require.js": "rq", "bin/r.js": "r", "package.json": '{"version": "2"}'})
    vendor = tmp_path / "book" / "_build" / "vendor" / "_vendor"
    for name, value in [("NODE_MODULES", nm), ("VENDOR_DIR", vendor), ("REPO_ROOT", tmp_path),
                        ("VENDOR_STAMP", tmp_path / "book" / "_build" / ".vendored.sha256")]:
        monkeypatch.setattr(prebuild, name, value)
    monkeypatch.setattr(prebuild, "npm_ci", lambda: False)

    prebuild.vendor()
    files = sorted(p.relative_to(vendor).as_posix() for p in vendor.rglob("*") if p.is_file())
    assert files == ["html-manager/embed-amd.js", "html-manager/package.json", "mathjax/LICENSE",
                     "mathjax/es5/output/chtml/fonts/a.js", "mathjax/es5/tex-chtml-full.js",
                     "requirejs/package.json", "requirejs/require.js"]
    (vendor / "requirejs" / "require.js").write_text("edited")
    prebuild.vendor()  # same lock, same mapping: nothing is copied again
    assert (vendor / "requirejs" / "require.js").read_text() == "edited"
    (nm / prebuild.NPM_STAMP).write_text("another-lock-hash\n")
    prebuild.vendor()  # a new install: copied afresh
    assert (vendor / "requirejs" / "require.js").read_text() == "rq"


def test_stale_execution_cache_is_dropped_only_when_vitlib_changes(tmp_path, monkeypatch):
    (tmp_path / "vitlib").mkdir()
    (tmp_path / "configs").mkdir()
    (tmp_path / "vitlib" / "model.py").write_text("x = 1\n")
    build = tmp_path / "book" / "_build"
    cache = build / ".jupyter_cache"
    for name, value in [("REPO_ROOT", tmp_path), ("BUILD_DIR", build), ("CACHE_DIR", cache),
                        ("HASH_FILE", build / "hash")]:
        monkeypatch.setattr(prebuild, name, value)

    prebuild.drop_stale_cache()  # first build: records the hash
    cache.mkdir(parents=True)
    prebuild.drop_stale_cache()  # nothing changed: the cache stays
    assert cache.is_dir()
    (tmp_path / "configs" / "quick.yaml").write_text("a: 1\n")
    prebuild.drop_stale_cache()  # a new config file: the cache goes
    assert not cache.exists()
    cache.mkdir()
    (tmp_path / "vitlib" / "model.py").write_text("x = 2\n")
    prebuild.drop_stale_cache()  # an edit in vitlib: the cache goes
    assert not cache.exists()


# --------------------------------------------------------------------------- the checks

def _png(width: int = 4, height: int = 3) -> bytes:
    """A valid RGB PNG, written by hand so the test needs no imaging library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\0" + b"\x80\x40\x20" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1></h1><main><h1 id="top">{heading}<a class="headerlink" href="#top">#</a></h1>{body}</main></body></html>"""
VIEW = '<script type="application/vnd.jupyter.widget-view+json">{}</script>'
RENDERED = '<div class="widget-subarea"><div class="widget-slider">k</div></div>'


@pytest.fixture
def site(tmp_path):
    """A small site: one good page, one page with every kind of fault, a redirect and assets."""
    root = tmp_path / "html"
    (root / "ch").mkdir(parents=True)
    (root / "_images").mkdir()
    (root / "_images" / "fig.png").write_bytes(_png())
    (root / "index.html").write_text(
        '<html><head><meta http-equiv="Refresh" content="0; url=ch/good.html" /></head></html>')
    (root / "ch" / "good.html").write_text(PAGE.format(
        title="1. Good page — My Book", heading="1. Good page",
        body='<p id="para">Plain text costs nothing.</p><img src="../_images/fig.png">'
             '<p><a href="bad.html#faults">faults</a> <a href="#para">here</a> '
             '<a href="https://example.org/">outside</a> <a href="../index.html">home</a> '
             '<a href="mailto:someone@example.org">mail</a></p>'
             '<pre>echo $HOME $$ \\(x\\)</pre>'
             f'<div class="cell_output">{RENDERED}{VIEW}</div>'))
    (root / "ch" / "bad.html").write_text(PAGE.format(
        title="Something else — Other Book", heading="Faulty page",
        body='<p id="faults">Raw maths: $a^2 + b^2$ and <span class="math">\\(x\\)</span></p>'
             '<img src="../_images/missing.png"><img src="http://example.invalid/remote.png">'
             '<a href="nowhere.html">dead</a> <a href="good.html#no-such-id">dead anchor</a>'
             '<script src="https://cdn.example.invalid/lib.js"></script>'
             # Never loaded by the browser (preload="none"), so only the page inspection sees it.
             '<audio preload="none" src="https://media.example.invalid/a.mp3"></audio>'
             f'<div class="cell_output">{VIEW}</div>'
             f'<div class="cell_output">{RENDERED}{RENDERED}{VIEW}</div>'
             '<script>console.error("deliberate console error")</script>'
             '<script>throw new Error("deliberate script error")</script>'))
    return root


@pytest.fixture
def served(site):
    with checks.serve(site) as url:
        yield url


def test_parse_page_reads_title_heading_and_redirects(site):
    page = checks.parse_page(site / "ch" / "good.html")
    assert page.title == "1. Good page — My Book"
    assert page.heading == "1. Good page"  # the empty <h1> and the "#" permalink are skipped
    assert page.redirect is None
    assert checks.parse_page(site / "index.html").redirect == "ch/good.html"
    (site / "x.html").write_text('<h1>Icon <img src="i.png"> and <br>text</h1><p>body</p>')
    assert checks.parse_page(site / "x.html").heading == "Icon and text"
    (site / "x.html").unlink()
    (site / "_static").mkdir()
    (site / "_static" / "asset.html").write_text("<p>not a page</p>")
    assert checks.list_pages(site) == ["ch/bad.html", "ch/good.html", "index.html"]
    assert checks.list_pages(site / "missing") == []


def test_check_links_finds_missing_files_and_missing_anchors(site, served, tmp_path, monkeypatch):
    # A developer's own linkchecker configuration is never read: this one would hide everything.
    home = tmp_path / "home"
    for rc in (home / ".linkchecker" / "linkcheckerrc", home / ".config" / "linkchecker" / "linkcheckerrc"):
        rc.parent.mkdir(parents=True)
        rc.write_text("[filtering]\nignore=.*\n[output]\nwarnings=0\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))

    broken = checks.check_links(served, checks.list_pages(site))
    assert broken == [
        "ch/bad.html: broken link '../_images/missing.png' -> _images/missing.png: 404 File not found",
        "ch/bad.html: broken link 'good.html#no-such-id' -> ch/good.html#no-such-id: "
        "Anchor `no-such-id' (decoded: `no-such-id') not found.",
        "ch/bad.html: broken link 'nowhere.html' -> ch/nowhere.html: 404 File not found",
    ], broken
    # The good page, its links to other hosts and to mail, and the redirect all pass. Fixed,
    # the site has no broken link left.
    (site / "ch" / "bad.html").write_text(PAGE.format(title="t", heading="h", body='<p id="faults">'))
    assert checks.check_links(served, checks.list_pages(site)) == []


def test_browser_check_passes_a_good_page_and_reports_every_fault(site, served, new_context, tmp_path):
    shots = tmp_path / "shots"
    results = {}
    for rel in ("ch/good.html", "ch/bad.html"):
        heading = checks.parse_page(site / rel).heading
        page = new_context().new_page()  # a fresh context each: check_page routes its requests
        results[rel] = checks.check_page(page, served + rel, heading, "My Book",
                                         shots / rel.replace("/", "__").replace(".html", ".png"))
    good, bad = results["ch/good.html"], results["ch/bad.html"]
    assert good.failures == [], good.failures
    assert (good.images, good.widgets) == (1, 1)  # it did look at them
    assert sorted(p.name for p in shots.iterdir()) == ["ch__bad.png", "ch__good.png"]
    assert (shots / "ch__good.png").read_bytes()[:4] == b"\x89PNG"

    text = "\n".join(bad.failures)
    for expected in [
        "lacks the book title", "lacks the page heading 'Faulty page'",
        "image did not load: ../_images/missing.png", "HTTP 404", "maths not typeset",
        "raw TeX in visible text", "widget 0 did not render", "widget 1 rendered 2 times",
        "console error: deliberate console error", "script error: deliberate script error",
        "request to another host (blocked): http://example.invalid/remote.png",
        "request to another host (blocked): https://cdn.example.invalid/lib.js",
        "loads an asset from another host: https://cdn.example.invalid/lib.js",
        "loads an asset from another host: https://media.example.invalid/a.mp3",
    ]:
        assert expected in text, f"{expected!r} not reported; got:\n{text}"
    assert (bad.images, bad.maths, bad.widgets) == (2, 1, 2)
    assert "media.example.invalid" not in "".join(f for f in bad.failures if "blocked" in f)


def test_the_built_site_checks_run_only_when_named_and_fail_without_a_site(tmp_path):
    # `make test` runs pytest over tests/ after `make book-test`: the page checks are left out.
    def config(*args):
        return SimpleNamespace(args=list(args), invocation_params=SimpleNamespace(dir=REPO))
    assert not checks._names_pages_module(config("tests", "notebooks"))
    assert not checks._names_pages_module(config("tests/test_book.py"))
    assert checks._names_pages_module(config("tests/test_book_pages.py"))
    assert checks._names_pages_module(config(f"{REPO}/tests/test_book_pages.py::test_links"))
    assert checks.no_book_message(REPO / "book" / "_build" / "html") == (
        "no built book in book/_build/html: run `make book` first")

    # Without a built book, they fail (not skip), saying what to do, in one line.
    missing = tmp_path / "html"
    env = {**os.environ, "VITBOOK_HTML": str(missing)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_book_pages.py"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert re.search(r"^2 failed in ", out.splitlines()[-1]), out
    assert out.splitlines().count(checks.no_book_message(missing)) == 2, out
    assert "skipped" not in out and "error" not in out.lower(), out


# --------------------------------------------------------------------------- teaching parts

def _count(text: str, pattern: str) -> int:
    return len(re.findall(pattern, text, flags=re.M))


@pytest.mark.parametrize("name", CHAPTERS + APPENDICES)
def test_every_exercise_has_a_solution_and_questions_have_answers(name):
    src = (REPO / "notebooks" / f"{name}.py").read_text()
    labels = re.findall(r"^# ```\{exercise\}.*\n# :label: (\S+)", src, flags=re.M)
    solved = re.findall(r"^# ```\{solution-start\} (\S+)", src, flags=re.M)
    assert len(labels) >= 2, f"{name}: {len(labels)} exercises"
    assert labels == solved, f"{name}: exercises {labels} but solutions {solved}"
    assert _count(src, r"^# ```\{solution-end\}") == len(solved)
    answers = _count(src, r"^# ```\{admonition\} Answer")
    assert 5 <= answers <= 8, f"{name}: {answers} comprehension questions with answers"


@pytest.mark.parametrize("name", CHAPTERS)
def test_core_chapters_stay_short_and_have_every_part(name):
    src = (REPO / "notebooks" / f"{name}.py").read_text()
    assert len(src.splitlines()) <= 550, f"{name}.py has {len(src.splitlines())} lines (at most 550)"
    for part in ("Learning objectives", "## Summary", "## Comprehension questions"):
        assert part.lower() in src.lower(), f"{name}: no {part!r}"
    assert "$" in src and "assert" in src
