"""Check the built book (book/_build/html) page by page, in a real browser, and its links.

    make book-test      # builds the book if needed, then: pytest -q tests/test_book_pages.py

One test per page (pytest-playwright, the system chromium, the site served on 127.0.0.1): see
book_pages_plugin.check_page for what a page must satisfy; a full-page screenshot of every page
goes to book/_build/screenshots. One more test runs linkchecker over the whole site: every
internal link must reach a file of the site, and its #fragment an id on that page.

These tests need the built book: without it they fail (`make book` first). A pytest run over
all of tests/ deselects them (they are `make book-test`'s); see book_pages_plugin. Set
VITBOOK_HTML=/path/to/html to check another copy of the site.
"""
from __future__ import annotations

import pytest

from book_pages_plugin import (HTML_DIR, SHOTS_DIR, check_links, check_page, list_pages,
                               parse_page, require)

pytest_plugins = ["book_pages_plugin"]

# One test per page of the site; without a site, one test that fails saying so.
PAGES = list_pages(HTML_DIR) or [pytest.param(None, id="no-built-book")]


ARCHITECTURE_ALT = "The ViT architecture, with the book model's shapes"
# The pages that show the architecture figure (book/assets/vit_architecture.svg).
ARCHITECTURE_PAGES = ["book/intro.html", "notebooks/02_patch_embedding.html", "notebooks/03_attention.html",
                      "notebooks/04_vit.html"]


@pytest.mark.parametrize("rel", PAGES)
def test_page(rel, book_site, book_title, page):
    site = require(book_site)
    src = parse_page(site.html_dir / rel)
    if src.redirect:
        return  # e.g. index.html, a bare redirect to the root page: test_links checks its target
    shot = SHOTS_DIR / (rel.replace("/", "__").removesuffix(".html") + ".png")
    result = check_page(page, site.url + rel, src.heading, book_title, shot)
    if rel in ARCHITECTURE_PAGES:  # the figure loaded and is drawn at a readable width
        widths = [im["width"] for im in result.shown if im["alt"] == ARCHITECTURE_ALT]
        if not widths or max(widths) < 300:
            result.failures.append(f"the architecture figure is not shown (drawn widths: {widths})")
    if result.failures:
        pytest.fail(f"{len(result.failures)} fault(s) on {rel}:\n  " + "\n  ".join(result.failures),
                    pytrace=False)


def test_links(book_site):
    site = require(book_site)
    pages = list_pages(site.html_dir)
    missing = [p for p in ARCHITECTURE_PAGES if p not in pages]  # else test_page would not look
    assert not missing, f"pages meant to show the architecture figure are not in the site: {missing}"
    broken = check_links(site.url, pages)
    if broken:
        pytest.fail(f"{len(broken)} broken link(s):\n  " + "\n  ".join(broken), pytrace=False)
