"""Explorers for chapter 10: read each model's audit report card, and move the training-security
thresholds to see which models change severity (the stored evidence re-graded, nothing recomputed)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from ipywidgets import VBox
from matplotlib.figure import Figure

from gdsec.audit import SEVERITY_COLOURS, AuditReport, Finding, trigger_severity
from gdsec.audit.report import SEVERITY_TEXT
from gdsec.widgets.core import explorer

__all__ = ["SHORT_NAMES", "plot_report", "plot_thresholds", "threshold_explorer"]

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
    ax.text(
        0,
        -0.35,
        f"Audit of {report.name}: worst finding {report.worst}",
        fontsize=11,
        weight="bold",
    )
    for row, finding in enumerate(report.findings):
        ax.text(
            0,
            row + 0.45,
            SHORT_NAMES.get(finding.question, finding.question),
            fontsize=9,
            va="center",
            weight="bold",
        )
        ax.text(
            2.55,
            row + 0.45,
            finding.severity,
            fontsize=9,
            va="center",
            ha="center",
            color=SEVERITY_TEXT.get(finding.severity, "black"),
            weight="bold",
            bbox={
                "boxstyle": "round,pad=0.3",
                "facecolor": SEVERITY_COLOURS.get(finding.severity, "grey"),
                "edgecolor": "none",
            },
        )
        ax.text(
            3.1,
            row + 0.45,
            "\n".join(textwrap.wrap(finding.summary, width)),
            fontsize=8.5,
            va="center",
        )
        ax.axhline(row + 0.95, color="0.85", linewidth=0.6)
    return fig


def _check_findings(findings: Mapping[str, Sequence[Finding]]) -> None:
    """Raise ``ValueError`` unless ``findings`` maps names to non-empty lists of training-security findings."""
    if not isinstance(findings, Mapping) or not findings:
        raise ValueError(
            "findings must map at least one model name to its training-security findings"
        )
    for label, items in findings.items():
        if isinstance(items, Finding) or not isinstance(items, Sequence) or not items:
            raise ValueError(f"findings[{label!r}] must be a non-empty list of Findings")
        for item in items:
            if not isinstance(item, Finding) or item.question != "training_security":
                raise ValueError(
                    f"findings[{label!r}] must hold training-security Findings (from audit_training_security)"
                )


def plot_thresholds(
    findings: Mapping[str, Sequence[Finding]], *, margin: float, high: float
) -> Figure:
    """Each finding's trigger excess over the clean references, coloured by the severity the thresholds give.

    Taught in chapter 10.
    """
    _check_findings(findings)
    fig, ax = plt.subplots(figsize=(8.0, 0.45 * len(findings) + 1.2))
    for row, items in enumerate(findings.values()):
        for item in items:
            excess, rate = item.evidence["excess_over_clean"], item.evidence["trigger_success"]
            severity = trigger_severity(excess, rate, margin=margin, high=high)
            ax.scatter(
                excess,
                row,
                s=60,
                color=SEVERITY_COLOURS[severity],
                edgecolor="black",
                linewidth=0.5,
                zorder=3,
            )
    ax.axvline(margin, color="0.3", linestyle="--", linewidth=1)
    ax.axvline(high, color="0.3", linestyle=":", linewidth=1)
    ax.set_yticks(range(len(findings)), list(findings), fontsize=8)
    ax.set_ylim(len(findings) - 0.5, -0.5)
    ax.set_xlim(-0.1, 1.0)
    ax.set_xlabel(
        "rebuilt trigger's success on the model minus its best success on a clean reference"
    )
    handles = [
        plt.Line2D([], [], marker="o", linestyle="", color=SEVERITY_COLOURS[s], label=s)
        for s in SEVERITY_COLOURS
    ]
    ax.legend(
        handles=handles,
        fontsize=7,
        loc="lower right",
        title=f"medium from {margin:g}, high from {high:g}",
        title_fontsize=7,
    )
    return fig


def threshold_explorer(
    findings: Mapping[str, Sequence[Finding]],
    *,
    margins: Sequence[float] = (0.2, 0.35, 0.5),
    highs: Sequence[float] = (0.5, 0.7),
    live: bool | None = None,
) -> VBox:
    """Move the training-security thresholds and watch which models change severity (stored evidence, re-graded).

    Taught in chapter 10.
    """
    _check_findings(findings)

    def render(margin: float, high: float) -> Figure:
        return plot_thresholds(findings, margin=margin, high=max(high, margin))

    return explorer(
        render,
        {"margin": list(margins), "high": list(highs)},
        live=live,
        live_ranges={"margin": (0.05, 0.9, 0.05), "high": (0.1, 1.0, 0.05)},
        descriptions={"margin": "medium from", "high": "high from"},
        title="Training security: where the thresholds put each model",
    )
