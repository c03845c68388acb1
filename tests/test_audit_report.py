"""Unit tests for gdsec.audit.report: findings, the report's table, Markdown, JSON and HTML, the one palette,
and the chapter 10 explorer that lays out report cards."""

from __future__ import annotations

import json
import math

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import pytest

from gdsec import audit
from gdsec.audit.report import CAVEAT, NOT_TESTED, SEVERITY_TEXT, contrast_ratio, grade
from gdsec.plotting import PALETTE
from gdsec.widgets import audit as audit_widgets
from gdsec.widgets.audit import plot_report, plot_thresholds, threshold_explorer


def _report(name: str = "model", **severities: str) -> audit.AuditReport:
    findings = tuple(
        audit.Finding(q, severities.get(q, "low"), f"summary {q}", {"value": 1.0}, "advice")
        for q in audit.QUESTIONS
    )
    return audit.AuditReport(name, findings, {"eps": 0.1})


def test_report_exports_markdown_json_and_html():
    evidence = {"inf": math.inf, "curve": {"0.1": 0.5}, "long": list(range(20)), "flag": True}
    first = audit.Finding("gradient_exposure", "medium", "a | b", evidence, "fix")
    report = audit.AuditReport("exports <model>", (first, *_report().findings[1:]), {"eps": 0.1})
    markdown = report.to_markdown()
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table) == 6 and "**medium**" in markdown and "a / b" in markdown
    assert (
        "long =" not in markdown and "flag = yes" in markdown
    )  # long evidence lists stay out of the table
    parsed = json.loads(report.to_json())
    assert (
        parsed["findings"][0]["evidence"]["inf"] == "inf"
        and len(parsed["findings"][0]["evidence"]["long"]) == 20
    )
    assert parsed["name"] == "exports <model>" and parsed["settings"] == {"eps": 0.1}
    page = report.to_html()
    assert page == report._repr_html_()
    assert (
        page.count("<tr") == 6
        and "exports &lt;model&gt;" in page
        and "medium" in page
        and "a | b" in page
    )
    assert "See chapters 8-9." in page and "(See chapters 8-9.)" in markdown
    for text in (markdown, page, report.to_json()):
        assert (
            "necessary, never sufficient" in text and "Not tested" in text or "not_tested" in text
        )
    assert (
        parsed["not_tested"] == list(NOT_TESTED)
        and parsed["caveat"] == CAVEAT
        and len(NOT_TESTED) >= 5
    )


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [("#000000", "#ffffff", 21.0), ("#ffffff", "#ffffff", 1.0), ("#777777", "#ffffff", 4.48)],
)
def test_contrast_ratio_follows_wcag(a, b, expected):
    assert contrast_ratio(a, b) == pytest.approx(expected, abs=0.01)
    assert contrast_ratio(b, a) == pytest.approx(expected, abs=0.01)


def test_report_reads_findings_severities_and_the_worst():
    report = _report(adversarial_testing="medium", training_security="high")
    assert report.worst == "high" and _report().worst == "low"
    assert list(report.severities) == list(audit.QUESTIONS)
    assert report.finding("training_security").severity == "high"
    assert report.finding("training_security").text == audit.QUESTIONS["training_security"]
    with pytest.raises(ValueError, match="question"):
        report.finding("nonsense")


@pytest.mark.parametrize(
    ("value", "expected"), [(0.1, "high"), (0.5, "medium"), (0.79, "medium"), (0.8, "low")]
)
def test_grade_maps_a_measurement_to_a_severity(value, expected):
    assert grade(value, high=0.5, medium=0.8) == expected


def test_one_severity_palette_for_the_report_and_the_explorer():
    assert audit.SEVERITY_COLOURS is audit_widgets.SEVERITY_COLOURS
    assert set(audit.SEVERITY_COLOURS) == set(audit.SEVERITIES)
    assert set(audit.SEVERITY_COLOURS.values()) <= set(PALETTE.values())
    report = _report(adversarial_testing="medium", training_security="high")
    page = report.to_html()
    for severity, colour in audit.SEVERITY_COLOURS.items():
        text = SEVERITY_TEXT[severity]
        assert (
            f'background:{colour};color:{text};padding:1px 6px;border-radius:3px">{severity}<'
            in page
        )
        assert contrast_ratio(text, colour) >= 4.5, f"{severity} badge fails WCAG AA"
    fig = plot_report(report)
    faces = {
        t.get_text(): t.get_bbox_patch().get_facecolor()
        for t in fig.axes[0].texts
        if t.get_bbox_patch() is not None
    }
    plt.close(fig)
    assert {s: mcolors.to_hex(c) for s, c in faces.items()} == {
        s: c.lower() for s, c in audit.SEVERITY_COLOURS.items()
    }


def test_plot_report_rejects_what_is_not_a_report():
    with pytest.raises(ValueError, match="report"):
        plot_report("not a report")


@pytest.mark.parametrize(
    ("excess", "rate", "expected"),
    [(0.6, 0.9, "high"), (0.6, 0.4, "medium"), (0.4, 0.9, "medium"), (0.2, 0.9, "low")],
)
def test_trigger_severity_grades_the_excess_over_clean_references(excess, rate, expected):
    assert audit.trigger_severity(excess, rate, margin=0.35, high=0.5) == expected


def _security(excess: float, rate: float) -> audit.Finding:
    return audit.Finding(
        "training_security", "low", "s", {"excess_over_clean": excess, "trigger_success": rate}, "a"
    )


def test_threshold_explorer_regrades_stored_evidence():
    findings = {"honest": [_security(0.1, 0.2), _security(0.2, 0.3)], "dark": [_security(0.8, 0.9)]}
    fig = plot_thresholds(findings, margin=0.15, high=0.5)
    colours = [mcolors.to_hex(c) for coll in fig.axes[0].collections for c in coll.get_facecolor()]
    plt.close(fig)
    expected = [audit.SEVERITY_COLOURS[s] for s in ("low", "medium", "high")]
    assert colours == [c.lower() for c in expected], (
        "each point takes the colour of the severity its thresholds give"
    )
    box = threshold_explorer(findings, margins=(0.15, 0.3), highs=(0.5,), live=False)
    stacks = [w for w in box.children if w.__class__.__name__ == "Stack"]
    assert len(stacks) == 1
    with pytest.raises(ValueError, match="findings"):
        threshold_explorer({})
    with pytest.raises(ValueError, match="training-security"):
        plot_thresholds({"x": [_report().findings[0]]}, margin=0.1, high=0.5)
