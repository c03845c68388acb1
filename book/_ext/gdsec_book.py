"""Local Sphinx extension for the course book.

* Removes the duplicated sphinx-thebe configuration script that jupyter-book 1.0.4 adds to every
  page (the browser otherwise logs ``Identifier 'THEBE_JS_URL' has already been declared``).
* Loads :mod:`gdsec_vendor`, which serves require.js, the ipywidgets html-manager and MathJax from
  the book's own ``_static`` folder (fetched from npm at build time), so pages work offline.
* Loads :mod:`gdsec_a11y` (theme and page fixes for WCAG 2.1 A/AA, dark-mode figure backdrop) and
  :mod:`gdsec_buildinfo` (Python, packages and machine as MyST substitutions for the execution page)
  and :mod:`gdsec_latex` (what the PDF build needs beyond Debian's small TeX Live set).
"""

from __future__ import annotations

from typing import Any


def _drop_duplicate_scripts(
    app: Any, pagename: str, templatename: str, context: dict, doctree: Any
) -> None:
    """Keep only the first copy of each inline script body on a page."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[str] = set()
    kept = []
    for script in scripts:
        body = getattr(script, "attributes", {}).get("body")
        key = body if body else str(script)
        if body and key in seen:
            continue
        seen.add(key)
        kept.append(script)
    context["script_files"] = kept


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", _drop_duplicate_scripts)
    app.setup_extension("gdsec_vendor")
    app.setup_extension("gdsec_a11y")
    app.setup_extension("gdsec_buildinfo")
    app.setup_extension("gdsec_latex")
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "0.1"}
