"""Accessibility fixes for the book's pages (WCAG 2.1 A/AA, as checked by axe-core in the browser test).

* Theme templates (``gdsec_templates/``, searched before the theme's own): the search field button
  is named by its visible text, the colour-mode button's icons are decorative.
* Page bodies (``html-page-context``): myst-nb's "Show code cell source" toggles lose the
  ``aria-label`` that hid their visible text from their name; the bibliography's entries get the
  ``listitem`` role their ``role="list"`` container requires (sphinxcontrib-bibtex writes the
  deprecated ``doc-biblioentry``).
* ``gdsec_static/gdsec-a11y.js`` names the kernel-free widgets once they render (explorer views get
  their text alternative as ``alt``, slider handles their label); ``gdsec-a11y.css`` keeps a white
  backdrop behind figures in dark mode and a visible focus ring on widget controls.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STATIC = HERE / "gdsec_static"
TEMPLATES = HERE / "gdsec_templates"
JS_FILE = "gdsec-a11y.js"
CSS_FILE = "gdsec-a11y.css"

#: (pattern, replacement) applied to every page body, in order.
BODY_FIXES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r'<summary aria-label="Toggle hidden content">'), "<summary>"),
    (re.compile(r'(<div class="citation"[^>]*?) role="doc-biblioentry"'), r'\1 role="listitem"'),
)


def fix_body(body: str) -> str:
    """Apply :data:`BODY_FIXES` to one page body."""
    for pattern, replacement in BODY_FIXES:
        body = pattern.sub(replacement, body)
    return body


def _page_context(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    if isinstance(context.get("body"), str):
        context["body"] = fix_body(context["body"])


def _add_paths(app: Any, config: Any) -> None:
    config.templates_path = [str(TEMPLATES), *config.templates_path]
    config.html_static_path = [*config.html_static_path, str(STATIC)]


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", _add_paths)
    app.connect("html-page-context", _page_context)
    app.add_js_file(JS_FILE)
    app.add_css_file(CSS_FILE)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "0.1"}
