"""Tests for the book's build helpers and its browser check.

Building the real book takes minutes, so it is not done here: `make book` builds it and
`make book-test` runs book/check_book.py on every page. These tests make sure that check
catches what it claims to catch (on a tiny site written here, in a real headless chromium),
that the build helper vendors safely and drops stale notebook outputs, and that the book's
configuration is the offline, strict, cached one the build relies on.
"""
from __future__ import annotations

import importlib.util
import io
import re
import struct
import sys
import tarfile
import zlib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
BOOK = REPO / "book"
CHAPTERS = ["01_dataset", "02_patch_embedding", "03_attention", "04_vit", "05_training",
            "06_interpretation"]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"book_{name}", BOOK / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


check_book = _load("check_book")
prebuild = _load("prebuild")


# --------------------------------------------------------------------------- configuration

def test_toc_lists_the_six_notebooks_and_the_book_pages():
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert [f for f in files if f.startswith("notebooks/")] == [f"notebooks/{c}" for c in CHAPTERS]
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
    # (The built site's own _static, under _build, holds Sphinx's scripts and is not a source.)
    assert not [p for p in BOOK.glob("**/_static/**/*.js") if "_build" not in p.relative_to(BOOK).parts]


def test_make_book_builds_strictly_in_quick_mode():
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^book: .*?(?=^\S)", makefile, re.S | re.M).group(0)
    for needle in ("$(STAMP)", "book/prebuild.py", "VITLIB_QUICK=1", "jupyter-book build .",
                   "--config book/_config.yml", "--toc book/_toc.yml", "--path-output book",
                   " -W", " -n", "--keep-going"):
        assert needle in recipe, f"`make book` lacks {needle!r}"
    assert re.search(r"^book-test: book\n\t.*book/check_book.py", makefile, re.M)


# --------------------------------------------------------------------------- prebuild.py

def _tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_extract_copies_only_the_mapped_files(tmp_path):
    tgz = _tarball(tmp_path / "p.tgz", {
        "package/dist/embed-amd.js": b"js", "package/dist/embed-amd.js.map": b"map",
        "package/dist/font.woff2": b"font", "package/src/x.ts": b"ts", "package/LICENSE": b"L"})
    out = tmp_path / "out"
    n = prebuild._extract(tgz, {"package/dist/": "", "package/LICENSE": "LICENSE"}, out)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert n == 3 and files == ["LICENSE", "embed-amd.js", "font.woff2"]


def test_extract_refuses_to_write_outside_its_folder(tmp_path):
    tgz = _tarball(tmp_path / "evil.tgz", {"package/../../escape.js": b"x"})
    with pytest.raises(SystemExit, match="refusing"):
        prebuild._extract(tgz, {"package/": ""}, tmp_path / "out")
    assert not (tmp_path / "escape.js").exists()


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


# --------------------------------------------------------------------------- check_book.py

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
             '<a href="https://example.org/">outside</a> <a href="../index.html">home</a></p>'
             '<pre>echo $HOME $$ \\(x\\)</pre>'
             f'<div class="cell_output">{RENDERED}{VIEW}</div>'))
    (root / "ch" / "bad.html").write_text(PAGE.format(
        title="Something else — Other Book", heading="Faulty page",
        body='<p id="faults">Raw maths: $a^2 + b^2$ and <span class="math">\\(x\\)</span></p>'
             '<img src="../_images/missing.png"><img src="http://example.invalid/remote.png">'
             '<a href="nowhere.html">dead</a> <a href="good.html#no-such-id">dead anchor</a>'
             '<script src="https://cdn.example.invalid/lib.js"></script>'
             f'<div class="cell_output">{VIEW}</div>'
             f'<div class="cell_output">{RENDERED}{RENDERED}{VIEW}</div>'
             '<script>console.error("deliberate console error")</script>'
             '<script>throw new Error("deliberate script error")</script>'))
    return root


def test_parse_page_reads_title_heading_ids_links_and_redirects(site):
    page = check_book.parse_page(site / "ch" / "good.html")
    assert page.title == "1. Good page — My Book"
    assert page.heading == "1. Good page"  # the empty <h1> and the "#" permalink are skipped
    assert {"top", "para"} <= page.ids
    assert "bad.html#faults" in page.links
    assert check_book.parse_page(site / "index.html").redirect == "ch/good.html"
    (site / "x.html").write_text('<h1>Icon <img src="i.png"> and <br>text</h1><p>body</p>')
    assert check_book.parse_page(site / "x.html").heading == "Icon and text"
    (site / "x.html").unlink()
    assert check_book.list_pages(site) == ["ch/bad.html", "ch/good.html", "index.html"]


def test_check_links_finds_missing_files_and_missing_anchors(site):
    failures = check_book.check_links(site, check_book.list_pages(site))
    assert "ch/good.html" not in failures and "index.html" not in failures
    bad = failures["ch/bad.html"]
    assert any("no file ch/nowhere.html" in f for f in bad)
    assert any("no id 'no-such-id'" in f for f in bad)
    assert any("missing asset '../_images/missing.png'" in f for f in bad)
    assert any("from another host: https://cdn.example.invalid/lib.js" in f for f in bad)
    assert any("from another host: http://example.invalid/remote.png" in f for f in bad)
    assert len(bad) == 5, bad


def test_browser_check_passes_a_good_page_and_reports_every_fault(site, tmp_path, capsys):
    shots = tmp_path / "shots"
    results = {r.page: r for r in check_book.run_checks(site, shots, "My Book")}
    good, bad = results["ch/good.html"], results["ch/bad.html"]
    assert good.failures == [], good.failures
    assert (good.images, good.widgets) == ("1/1", "1/1")
    assert results["index.html"].failures == []
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
        "no file ch/nowhere.html", "no id 'no-such-id'",
    ]:
        assert expected in text, f"{expected!r} not reported; got:\n{text}"
    assert bad.maths == "0/1" and bad.widgets == "1/2"

    assert check_book.report(list(results.values())) == 1
    out = capsys.readouterr().out
    assert "ch/bad.html: image did not load" in out and "ch/good.html" in out
