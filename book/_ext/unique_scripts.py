"""Sphinx extension for this book: every script tag at most once per page.

sphinx-thebe 0.3.1 registers its inline configuration script (`const THEBE_JS_URL = ...`) in a
way that Sphinx 7.4 emits twice, and the second copy is a JavaScript SyntaxError on every page
(found by `scripts/browser_check.py`). Dropping exact duplicates fixes it without touching
anything else.
"""

from __future__ import annotations

from typing import Any


def _unique_scripts(app: Any, pagename: str, templatename: str, context: dict[str, Any],
                    doctree: Any) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple[str, str]] = set()
    unique = []
    for script in scripts:
        # the same script may be registered with filename None and with "" (and another
        # priority): compare what ends up in the page
        key = (str(getattr(script, "filename", script) or ""),
               repr(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app: Any) -> dict[str, Any]:
    """Register the page-context hook (late, after the theme's own hooks)."""
    app.connect("html-page-context", _unique_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
