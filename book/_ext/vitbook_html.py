"""A local Sphinx extension: small fixes to the HTML that Jupyter Book 1.x writes.

Loaded through `sphinx.local_extensions` in book/_config.yml.

- Each inline <script> registered while reading (sphinx-thebe's config, for one) is written
  twice: Sphinx keeps a copy with filename None and re-adds it with filename '', which do not
  compare equal. The second `const THEBE_JS_URL = ...` then throws "Identifier has already been
  declared" on every page. We drop exact duplicates when each page is written.
"""
from __future__ import annotations

from typing import Any


def _dedupe_scripts(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen: set[tuple] = set()
    unique = []
    for js in scripts:
        attrs = getattr(js, "attributes", {}) or {}
        key = (getattr(js, "filename", js) or "", tuple(sorted(attrs.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    # In place: the list is the builder's, which Sphinx restores after every page anyway.
    scripts[:] = unique


def setup(app: Any) -> dict[str, Any]:
    # Late (priority 900), after myst-nb and sphinx.ext.mathjax have added their scripts.
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
