"""Explorer for chapter 10: pick a model and read its audit report card (precomputed reports)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping

import matplotlib.pyplot as plt
from ipywidgets import VBox
from matplotlib.figure import Figure

from gdsec.audit import SEVERITY_COLOURS, AuditReport
from gdsec.audit.report import SEVERITY_TEXT
from gdsec.widgets.core import explorer

__all__ = ["SHORT_NAMES", "audit_explorer", "plot_report"]

#: Short row labels for the five audit questions.
SHORT_NAMES = {
    "gradient_exposure": "1. Gradient exposure",
    "adversarial_testing": "2. Adversarial testing",
    "training_security": "3. Training security",
    "robustness_verification": "4. Robustness verification",
    "convergence_properties": "5. Convergence",
}


def plot_report(report: AuditReport, *, width: int = 72) -> Figure:
    """A report card: one row per audit question with its severity badge and its one-line summary.

    Taught in chapter 10.
    """
    if not isinstance(report, AuditReport):
        raise ValueError(f"report must be an AuditReport, got {type(report).__name__}")
    n = len(report.findings)
    fig, ax = plt.subplots(figsize=(10.0, 0.8 * n + 0.5))
    ax.set_xlim(0, 10)
    ax.set_ylim(n, -0.6)
    ax.axis("off")
    ax.grid(False)
    ax.text(0, -0.35, f"Audit of {report.name}: worst finding {report.worst}", fontsize=11, weight="bold")
    for row, finding in enumerate(report.findings):
        ax.text(0, row + 0.45, SHORT_NAMES.get(finding.question, finding.question), fontsize=9, va="center", weight="bold")
        ax.text(
            2.55, row + 0.45, finding.severity, fontsize=9, va="center", ha="center", color=SEVERITY_TEXT.get(finding.severity, "black"), weight="bold",
            bbox={"boxstyle": "round,pad=0.3", "facecolor": SEVERITY_COLOURS.get(finding.severity, "grey"), "edgecolor": "none"},
        )
        ax.text(3.1, row + 0.45, "\n".join(textwrap.wrap(finding.summary, width)), fontsize=8.5, va="center")
        ax.axhline(row + 0.95, color="0.85", linewidth=0.6)
    return fig


def audit_explorer(reports: Mapping[str, AuditReport], *, live: bool | None = None) -> VBox:
    """Toggle between the report cards of several audited models (the reports are computed beforehand).

    Taught in chapter 10.
    """
    if not isinstance(reports, Mapping) or not reports:
        raise ValueError("reports must map at least one model name to its AuditReport")
    for label, report in reports.items():
        if not isinstance(report, AuditReport):
            raise ValueError(f"reports[{label!r}] must be an AuditReport, got {type(report).__name__}")

    def render(model: str) -> Figure:
        return plot_report(reports[model])

    return explorer(
        render, {"model": list(reports)}, live=live, descriptions={"model": "model to audit"},
        title="Five audit questions, one card per model",
    )
