"""Audit question 4, robustness verification: is the measured robustness real, or are gradients hidden?"""

from __future__ import annotations

from torch import nn

from gdsec.audit.config import AuditConfig, eval_rows
from gdsec.audit.report import Finding
from gdsec.data import Split
from gdsec.masking import sanity_checks

__all__ = ["check_robustness_verification"]


def check_robustness_verification(model: nn.Module, data: Split, config: AuditConfig) -> Finding:
    """The masking sanity checks of gdsec.masking: do weaker attacks ever beat stronger ones?

    Taught in chapter 10.
    """
    x, y = eval_rows(data, config)
    report = sanity_checks(
        model, x, y, eps=config.eps, surrogate=config.surrogate, steps=config.pgd_steps,
        queries=config.queries, seed=config.seed,
    )
    failed = [name for name, passed in report.checks.items() if not passed]
    severity = "high" if report.masked else "low"
    summary = (
        f"{len(report.checks) - len(failed)} of {len(report.checks)} sanity checks pass"
        + (f"; failed: {', '.join(failed)}. The robustness is an artefact of hidden gradients." if failed else ".")
    )
    recommendation = (
        "Do not report white-box robustness for this model: evaluate with BPDA, EOT, transfer and "
        "gradient-free attacks, and remove the masking component."
        if report.masked
        else "Robustness measurements are consistent; keep the sanity checks in every evaluation."
    )
    evidence = {"masked": report.masked, "failed_checks": failed, **{k: float(v) for k, v in report.evidence.items()}}
    return Finding("robustness_verification", severity, summary, evidence, recommendation)
