"""What ``gdsec-audit`` gives a CI pipeline: the verdict, JUnit XML, and a comparison with a baseline.

:func:`failing` names the findings that reach ``--fail-on``; :func:`junit_xml` renders a report's
data (:meth:`AuditReport.to_dict`) as one JUnit test case per question; :func:`read_baseline` reads
an earlier JSON report and :func:`regressions` lists what got worse since.
"""

from __future__ import annotations

import hashlib
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

from gdsec.audit.report import QUESTIONS, SEVERITIES, AuditReport, Finding

__all__ = ["FAIL_ON", "failing", "junit_xml", "read_baseline", "regressions", "sha256"]

#: The ``--fail-on`` levels, from strictest to never failing.
FAIL_ON = ("low", "medium", "high", "never")


def failing(findings: tuple[Finding, ...], fail_on: str) -> list[str]:
    """The questions whose severity reaches ``fail_on`` (an unknown severity always counts).

    Taught in chapter 10.
    """
    if fail_on not in FAIL_ON:
        raise ValueError(f"fail_on must be one of {FAIL_ON}, got {fail_on!r}")
    rank = {name: i for i, name in enumerate(FAIL_ON)}
    return [f.question for f in findings if rank.get(f.severity, rank["high"]) >= rank[fail_on]]


def sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of the file at ``path``, in hexadecimal. Used in chapter 10."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def junit_xml(report: AuditReport, fail_on: str) -> str:
    """The report as JUnit XML: one test case per question, failed when it reaches ``fail_on``.

    Questions that did not run are skipped test cases; the verdict, exit status and input hashes
    are properties of the suite. Taught in chapter 10.
    """
    data, bad = report.to_dict(), set(failing(report.findings, fail_on))
    not_run = dict(report.run.get("not_run", {}))
    suite = ET.Element(
        "testsuite",
        name=f"gdsec-audit {report.name}",
        tests=str(len(QUESTIONS)),
        failures=str(len(bad)),
        errors="0",
        skipped=str(len(QUESTIONS) - len(report.findings)),
    )
    properties = ET.SubElement(suite, "properties")
    inputs = data.get("inputs", {})
    values = {
        "verdict": report.verdict,
        "exit_status": data.get("exit_status"),
        "schema_version": data["schema_version"],
        **{f"sha256.{k}": v.get("sha256") for k, v in inputs.items() if isinstance(v, dict)},
    }
    for name, value in values.items():
        ET.SubElement(properties, "property", name=name, value=str(value))
    found = {f.question: f for f in report.findings}
    for question in QUESTIONS:
        case = ET.SubElement(suite, "testcase", classname="gdsec-audit", name=question)
        if question not in found:
            reason = not_run.get(question, "not run")
            ET.SubElement(case, "skipped", message=str(reason))
            continue
        finding = found[question]
        if question in bad:
            failure = ET.SubElement(
                case,
                "failure",
                type=finding.severity,
                message=f"{finding.severity} (reaches --fail-on {fail_on}): {finding.summary}",
            )
            failure.text = finding.recommendation
        ET.SubElement(case, "system-out").text = f"{finding.severity}: {finding.summary}"
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, "unicode") + "\n"


def read_baseline(path: str | os.PathLike) -> dict[str, object]:
    """An earlier ``gdsec-audit`` JSON report, or ``ValueError`` saying why ``path`` is not one.

    Used in chapter 10.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not JSON"
        raise ValueError(f"--baseline {path}: {reason}") from None
    findings = data.get("findings") if isinstance(data, dict) else None
    if not isinstance(findings, list) or not all(
        isinstance(f, dict) and f.get("question") in QUESTIONS and f.get("severity") in SEVERITIES
        for f in findings
    ):
        raise ValueError(f"--baseline {path}: not a gdsec-audit JSON report (--format json)")
    return data


def _robust(finding: Mapping[str, object]) -> tuple[float, float] | None:
    """(robust accuracy, lower end of its 95 % interval) of an adversarial-testing finding."""
    evidence = finding.get("evidence", {})
    value, interval = evidence.get("robust_accuracy"), evidence.get("robust_accuracy_ci95")
    if not isinstance(value, int | float) or not isinstance(interval, list | tuple):
        return None
    return float(value), float(interval[0])


def regressions(report: AuditReport, baseline: Mapping[str, object]) -> list[str]:
    """What got worse than ``baseline``: a higher severity on any question answered in both, or an
    adversarial-testing robust accuracy below the baseline's 95 % interval.

    Taught in chapter 10.
    """
    old = {f["question"]: f for f in baseline["findings"]}
    worse = []
    for finding in report.findings:
        before = old.get(finding.question)
        if before is None:
            continue
        if SEVERITIES.index(finding.severity) > SEVERITIES.index(before["severity"]):
            worse.append(f"{finding.question}: {before['severity']} -> {finding.severity}")
        now, then = _robust(asdict(finding)), _robust(before)
        if now is not None and then is not None and now[0] < then[1]:
            worse.append(
                f"{finding.question}: robust accuracy {now[0]:.3f}, below the baseline's 95 % "
                f"interval (from {then[1]:.3f})"
            )
    return worse
