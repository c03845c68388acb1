"""The audit's vocabulary and its report: questions, severities, findings, and their rendering.

A :class:`Finding` answers one audit question; an :class:`AuditReport` holds one per question and
renders as an HTML table in a notebook, as Markdown for a ticket and as strict JSON for a dashboard.
:data:`SEVERITY_COLOURS` is the one severity palette, shared with the chapter 10 explorer.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from gdsec.plotting import PALETTE

__all__ = [
    "CAVEAT",
    "QUESTION_CHAPTERS",
    "SCHEMA_VERSION",
    "NOT_TESTED",
    "QUESTIONS",
    "SEVERITIES",
    "SEVERITY_COLOURS",
    "SEVERITY_TEXT",
    "AuditReport",
    "Finding",
    "contrast_ratio",
    "grade",
]

#: The five audit questions, keyed by the check that answers them (paraphrasing the source article).
QUESTIONS: dict[str, str] = {
    "gradient_exposure": (
        "What can an outsider learn or do with what the model reveals "
        "(labels, scores, logits, gradients)?"
    ),
    "adversarial_testing": "How does the model hold up against the strongest gradient-based and query-based attacks?",
    "training_security": "Could the training data have steered the descent (poisoning, a backdoor)?",
    "robustness_verification": "Is the measured robustness real, or are the gradients merely hidden?",
    "convergence_properties": "Where did training stop, and what kind of minimum is it?",
}
SEVERITIES = ("low", "medium", "high")
#: The chapters that teach what each question measures (named in every recommendation).
QUESTION_CHAPTERS = {
    "gradient_exposure": "chapters 8-9",
    "adversarial_testing": "chapters 5-6",
    "training_security": "chapters 3-4",
    "robustness_verification": "chapter 8",
    "convergence_properties": "chapters 1 and 7",
}
#: The one severity palette (Okabe-Ito colours from :data:`gdsec.plotting.PALETTE`).
SEVERITY_COLOURS = {
    "low": PALETTE["green"],
    "medium": PALETTE["orange"],
    "high": PALETTE["vermillion"],
}
#: What the audit does not test: a passing report says nothing about these.
NOT_TESTED = (
    "attacks designed for this particular model beyond BPDA, EOT and transfer (passing is necessary, never sufficient)",
    "threat models other than L-infinity perturbations of at most eps (L2, patches, rotations, semantic changes)",
    "certified (lower-bound) robustness: every robust accuracy here is an upper bound from attacks",
    "backdoors that the training-data scan cannot rebuild (clean-label, input-dependent or blended triggers "
    "the flagged rows do not share) and poison without a trigger; a model-only scan (Neural Cleanse, STRIP)",
    "privacy beyond one DLG reconstruction: membership inference, model extraction, attribute inference",
    "data outside the trusted split: distribution shift, and a trusted split that is itself poisoned",
)
#: The version of the JSON report's layout (``to_dict``), raised when a field changes meaning.
SCHEMA_VERSION = 2
#: The sentence every report carries.
CAVEAT = "A passing audit is necessary, never sufficient: it bounds what these attacks and scans found, nothing more."


def _luminance(colour: str) -> float:
    """WCAG relative luminance of a ``#rrggbb`` colour."""
    channels = [int(colour.lstrip("#")[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG contrast ratio of two ``#rrggbb`` colours (AA body text needs at least 4.5).

    Taught in chapter 10.
    """
    light, dark = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


#: Badge text colour per severity: black or white, whichever contrasts more with the badge.
SEVERITY_TEXT = {
    s: max(("#000000", "#ffffff"), key=lambda text, bg=bg: contrast_ratio(text, bg))
    for s, bg in SEVERITY_COLOURS.items()
}


def grade(value: float, *, high: float, medium: float) -> str:
    """'high' when ``value`` is below ``high``, 'medium' below ``medium``, else 'low'.

    Taught in chapter 10.
    """
    return "high" if value < high else "medium" if value < medium else "low"


@dataclass(frozen=True)
class Finding:
    """The answer to one audit question: a severity, the measured evidence and what to do about it.

    Taught in chapter 10.
    """

    question: str
    severity: str
    summary: str
    evidence: dict[str, object]
    recommendation: str

    @property
    def text(self) -> str:
        """The question this finding answers, in words."""
        return QUESTIONS.get(self.question, self.question)


def _format(value: object) -> str:
    """Short human-readable form of one evidence value."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.3g}"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_format(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    return str(value)


def _shown(evidence: Mapping[str, object]) -> dict[str, object]:
    """The evidence items short enough for a table row (long lists stay in the JSON export)."""
    return {k: v for k, v in evidence.items() if not (isinstance(v, list | tuple) and len(v) > 8)}


def _jsonable(value: object) -> object:
    """``value`` with infinities as strings and tuples as lists, so that ``json.dumps`` is strict."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _badge(severity: str) -> str:
    """An HTML badge for ``severity`` in its palette colour."""
    return (
        f'<span style="background:{SEVERITY_COLOURS.get(severity, "#000000")};'
        f"color:{SEVERITY_TEXT.get(severity, '#ffffff')};"
        f'padding:1px 6px;border-radius:3px">{html.escape(severity)}</span>'
    )


def _html_row(i: int, f: Finding) -> str:
    """One HTML table row: number, question, severity badge, summary with evidence, recommendation."""
    evidence = "<br>".join(
        f"<code>{html.escape(k)}</code> = {html.escape(_format(v))}"
        for k, v in _shown(f.evidence).items()
    )
    return (
        f'<tr style="vertical-align:top"><td>{i}</td><td>{html.escape(f.text)}</td><td>{_badge(f.severity)}</td>'
        f"<td>{html.escape(f.summary)}<br><small>{evidence}</small></td>"
        f"<td>{html.escape(f.recommendation)}<br><small>See "
        f"{QUESTION_CHAPTERS.get(f.question, 'the course')}.</small></td></tr>"
    )


def _markdown_row(i: int, f: Finding) -> str:
    """One Markdown table row (pipes inside cells become slashes)."""
    evidence = "; ".join(f"{k} = {_format(v)}" for k, v in _shown(f.evidence).items())
    advice = f"{f.recommendation} (See {QUESTION_CHAPTERS.get(f.question, 'the course')}.)"
    cells = [str(i), f.text, f"**{f.severity}**", f"{f.summary} ({evidence})", advice]
    return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"


@dataclass(frozen=True)
class AuditReport:
    """Findings for the five audit questions about one model; a table in notebooks, Markdown, JSON.

    Taught in chapter 10.
    """

    name: str
    findings: tuple[Finding, ...]
    settings: dict[str, object] = field(default_factory=dict)
    #: What a command adds to stand on its own: verdict, exit_status, inputs (SHA-256), versions,
    #: options, incomplete and completed_questions (see the README's ``gdsec-audit`` section).
    run: dict[str, object] = field(default_factory=dict)

    def finding(self, question: str) -> Finding:
        """The finding that answers ``question`` (a key of ``QUESTIONS``)."""
        for item in self.findings:
            if item.question == question:
                return item
        raise ValueError(
            f"question must be one of {[f.question for f in self.findings]}, got {question!r}"
        )

    @property
    def severities(self) -> dict[str, str]:
        """Question -> severity, in audit order."""
        return {f.question: f.severity for f in self.findings}

    @property
    def worst(self) -> str:
        """The highest severity among the findings ("none" when no question was answered)."""
        return max((f.severity for f in self.findings), key=SEVERITIES.index, default="none")

    @property
    def verdict(self) -> str:
        """One line that leads every rendering: pass or fail, the worst severity, completeness."""
        verdict = self.run.get("verdict")
        line = f"worst finding: {self.worst}"
        if isinstance(verdict, Mapping):
            failing = ", ".join(verdict.get("failing", ()))
            line = f"{str(verdict.get('result', '?')).upper()} ({line}" + (
                f"; reaching --fail-on {verdict.get('fail_on')}: {failing})" if failing else ")"
            )
        if self.run.get("incomplete"):
            done = ", ".join(self.run.get("completed_questions", ())) or "none"
            line += f"; incomplete, questions answered: {done}"
        return line

    def to_dict(self) -> dict[str, object]:
        """Plain data: name, settings and every finding with its full evidence."""
        findings = [asdict(f) for f in self.findings]
        return _jsonable(
            {
                "schema_version": SCHEMA_VERSION,
                **self.run,
                "name": self.name,
                "settings": self.settings,
                "findings": findings,
                "not_tested": list(NOT_TESTED),
                "caveat": CAVEAT,
            }
        )

    def to_json(self, *, indent: int = 2) -> str:
        """The report as strict JSON (infinities written as strings)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_markdown(self) -> str:
        """The report as a Markdown table, one row per question, ready to paste into a ticket."""
        lines = [
            f"### Audit of {self.name}",
            "",
            f"**Verdict: {self.verdict}**",
            "",
            "| # | question | severity | evidence | recommendation |",
            "|---|---|---|---|---|",
        ]
        lines += [_markdown_row(i, f) for i, f in enumerate(self.findings, start=1)]
        lines += ["", f"**{CAVEAT}** Not tested:", "", *(f"- {item}" for item in NOT_TESTED)]
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        """The report as an HTML table: severity colour-coded, evidence listed under each summary."""
        rows = "".join(_html_row(i, f) for i, f in enumerate(self.findings, start=1))
        head = "".join(
            f"<th>{h}</th>" for h in ("#", "question", "severity", "evidence", "recommendation")
        )
        return (
            f"<p><b>Audit of {html.escape(self.name)}</b></p>"
            f"<p><b>Verdict: {html.escape(self.verdict)}</b></p>"
            f'<table style="font-size:0.85em;text-align:left"><thead><tr>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table>"
            f"<p><b>{html.escape(CAVEAT)}</b> Not tested:</p>"
            f"<ul>{''.join(f'<li>{html.escape(t)}</li>' for t in NOT_TESTED)}</ul>"
        )

    def _repr_html_(self) -> str:
        """Jupyter's rich display: the HTML table of :meth:`to_html`."""
        return self.to_html()
