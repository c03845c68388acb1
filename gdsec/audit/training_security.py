"""Audit question 3, training security: could the training data have steered the descent?

The scan of :func:`gdsec.poisoning.detect_poison` flags suspicious training rows. For each class
among them a trigger is rebuilt from the flagged rows of that class: the features whose mean differs
most from the other classes' mean, in either direction (ink added or removed, any shape, image or
tabular rows), stamped at the flagged rows' mean value. The trigger is then confirmed on the
model: how many clean training rows of other classes does it send to that class? Clean reference
models (several seeds, trained on the trusted split) answer the same question for the same stamp,
which calibrates the threshold: a stamp that naturally looks like the class moves them too.
"""

from __future__ import annotations

import torch
from torch import nn

from gdsec.audit.config import AuditConfig, provenance
from gdsec.audit.references import reference_models
from gdsec.audit.report import Finding
from gdsec.data import Split
from gdsec.poisoning import detect_poison, rebuild_trigger, stamp
from gdsec.train import predict

__all__ = ["audit_training_security", "trigger_severity"]

_MIN_ROWS = 3  # a class needs this many flagged rows before a trigger is rebuilt from them


def _rate(model: nn.Module, x: torch.Tensor, target: int) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``target``."""
    return (predict(model, x) == target).float().mean().item() if len(x) else 0.0


def _candidates(
    model: nn.Module,
    split: Split,
    flagged: torch.Tensor,
    references: tuple[nn.Module, ...],
    config: AuditConfig,
) -> list[dict]:
    """One rebuilt trigger per class with enough flagged rows, with its success on the model and on the references."""
    x, y = split.x_train, split.y_train
    unflagged = torch.ones(len(y), dtype=torch.bool)
    unflagged[flagged] = False
    counts = torch.bincount(y[flagged], minlength=int(y.max()) + 1)
    found = []
    for target in (counts >= _MIN_ROWS).nonzero().flatten().tolist():
        features, values = rebuild_trigger(
            x, y, flagged, target, max_features=config.trigger_pixels
        )
        probe = stamp(x[unflagged & (y != target)], features, values)
        clean = [_rate(r, probe, target) for r in references]
        rate = _rate(model, probe, target)
        found.append(
            {
                "target": target,
                "features": features,
                "values": values,
                "rate": rate,
                "clean": clean,
                "excess": rate - max(clean),
                "rows": len(probe),
            }
        )
    return found


def trigger_severity(excess: float, rate: float, *, margin: float, high: float) -> str:
    """Severity of a rebuilt trigger that moves ``rate`` of the rows, ``excess`` more than on any clean reference.

    "high" from ``high`` excess (and half of the rows moved), "medium" from ``margin``, else "low".
    Taught in chapter 10.
    """
    if excess >= high and rate >= 0.5:
        return "high"
    return "medium" if excess >= margin else "low"


def _severity(best: dict | None, config: AuditConfig) -> str:
    """The severity of the strongest rebuilt trigger (``low`` when no class had enough flagged rows)."""
    if best is None:
        return "low"
    return trigger_severity(
        best["excess"], best["rate"], margin=config.trigger_margin, high=config.trigger_high
    )


def _recommendation(severity: str) -> str:
    """What to do about a training-security finding of ``severity``."""
    return {
        "high": "Treat the model as backdoored: quarantine the flagged rows, trace their provenance, retrain from "
        "trusted data and re-run this scan.",
        "medium": "Inspect the flagged rows by hand and keep provenance for every training row.",
        "low": "No sign of a backdoor in this scan; that is necessary, never sufficient (a trigger this scan "
        "cannot rebuild, or poison without a trigger, may remain). Keep data provenance and re-scan new data.",
    }[severity]


def audit_training_security(model: nn.Module, split: Split, config: AuditConfig) -> Finding:
    """Scan the training data for poison, rebuild a trigger of either sign, confirm it against clean references.

    Taught in chapter 10.
    """
    references = config.references or reference_models(
        split, n_seeds=config.n_references, seed=config.seed
    )
    judge = config.reference if config.reference is not None else references[0]
    judge = judge if config.poison_method == "loss" else model
    x, y = split.x_train, split.y_train
    flagged = detect_poison(
        judge, x, y, method=config.poison_method, expected_fraction=config.expected_fraction
    ).flagged
    counts = torch.bincount(y[flagged], minlength=int(y.max()) + 1)
    suspect = int(counts.argmax())
    share = counts[suspect].item() / max(len(flagged), 1)
    found = _candidates(model, split, flagged, references, config)
    best = max(found, key=lambda c: c["excess"]) if found else None
    severity = _severity(best, config)
    rate, clean = (best["rate"], max(best["clean"])) if best else (0.0, 0.0)
    target = best["target"] if best else suspect
    summary = (
        f"The scan flags {len(flagged)} of {len(y)} training rows, {share:.0%} of them labelled {suspect}. "
        f"A {len(best['features']) if best else 0}-feature trigger rebuilt from them sends {rate:.0%} of "
        f"{best['rows'] if best else 0} clean rows of other classes to class {target}; on {len(references)} clean "
        f"reference models the same stamp reaches at most {clean:.0%}."
    )
    evidence = {
        "method": config.poison_method,
        "flagged_rows": len(flagged),
        "suspected_class": suspect,
        "share_of_flagged_in_class": share,
        "trigger_class": target,
        "trigger_features": best["features"].tolist() if best else [],
        "trigger_values": [round(v, 4) for v in best["values"].tolist()] if best else [],
        "trigger_success": rate,
        "clean_reference_success": best["clean"] if best else [],
        "excess_over_clean": best["excess"] if best else 0.0,
        "flagged_index": flagged.tolist(),
        **provenance(
            best["rows"] if best else 0,
            config,
            ("expected_fraction", "trigger_pixels", "n_references"),
        ),
    }
    return Finding("training_security", severity, summary, evidence, _recommendation(severity))
