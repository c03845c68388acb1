"""Settings that let the whole book build as one PDF with Debian's small TeX Live set (``.ci/run``).

* ``gdsec_latex/bbm.sty``, a stand-in for the ``bbm`` package that sphinx-jupyterbook-latex's class
  requires (the real one ships only in the 1.4 GB ``texlive-fonts-extra``), is copied next to the
  ``.tex`` file;
* ``latex_use_xindy = False``: the index is made with ``makeindex`` (TeX Live binaries) instead of
  ``xindy``, a separate Debian package;
* the preamble makes ``\\*`` (markdown's escaped asterisk, e.g. ``$w^\\*$``) a plain ``*``: LaTeX's own
  ``\\*`` is a discretionary times sign that cannot stand in a superscript.

Nothing here changes the HTML build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ADDITIONAL_FILES = (HERE / "gdsec_latex" / "bbm.sty",)
PREAMBLE = r"""
% gdsec_latex: markdown's escaped asterisk is a plain asterisk
\renewcommand{\*}{{*}}
"""


def _configure(app: Any, config: Any) -> None:
    config.latex_additional_files = [*config.latex_additional_files, *map(str, ADDITIONAL_FILES)]
    config.latex_use_xindy = False
    elements = dict(config.latex_elements or {})
    elements["preamble"] = elements.get("preamble", "") + PREAMBLE
    config.latex_elements = elements


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", _configure, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "0.1"}
