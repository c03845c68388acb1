"""Audit question 3, training security: could the training data have steered the descent?

The scan of :func:`gdsec.poisoning.detect_poison` flags suspicious training rows; a trigger rebuilt
from them with :func:`gdsec.poisoning.reconstruct_trigger` is then confirmed against the model.
"""

from __future__ import annotations

import torch
from torch import nn

from gdsec.audit.config import AuditConfig
from gdsec.audit.report import Finding
from gdsec.data import Split
from gdsec.models import mlp
from gdsec.poisoning import detect_poison, reconstruct_trigger, stamp
from gdsec.train import predict, train

__all__ = ["check_training_security", "reference_model"]


def reference_model(data: Split, *, epochs: int = 40, seed: int = 0) -> nn.Module:
    """A small MLP the auditor trains on the trusted held-out split, to judge the training labels.

    Taught in chapter 10.
    """
    x, y = data.x_test, data.y_test
    n_classes = int(max(data.y_train.max().item(), y.max().item())) + 1
    model = mlp(n_features=int(x[0].numel()), n_classes=n_classes, seed=seed)
    train(model, x, y, optimizer="adam", lr=0.01, epochs=epochs, batch_size=min(64, len(y)), seed=seed, progress=False)
    return model


def _recommendation(severity: str) -> str:
    """What to do about a training-security finding of ``severity``."""
    return {
        "high": "Treat the model as backdoored: quarantine the flagged rows, trace their provenance, retrain from "
        "trusted data and re-run this scan.",
        "medium": "Inspect the flagged rows by hand and keep provenance for every training row.",
        "low": "No sign of a backdoor in this scan; keep data provenance and re-scan whenever new data arrives.",
    }[severity]


def check_training_security(model: nn.Module, data: Split, config: AuditConfig) -> Finding:
    """Scan the training data for poison (gdsec.poisoning.detect_poison), then test a rebuilt trigger.

    Taught in chapter 10.
    """
    x, y = data.x_train, data.y_train
    if config.poison_method == "loss":
        judge = config.reference if config.reference is not None else reference_model(data, seed=config.seed)
    else:
        judge = model
    detection = detect_poison(judge, x, y, method=config.poison_method, expected_fraction=config.expected_fraction)
    flagged = detection.flagged
    counts = torch.bincount(y[flagged], minlength=int(y.max()) + 1)
    suspect = int(counts.argmax())
    share = counts[suspect].item() / max(len(flagged), 1)
    x_other, y_other = data.x_test[data.y_test != suspect], data.y_test[data.y_test != suspect]
    best = (0.0, suspect, torch.empty(0, dtype=torch.long))
    for target in counts.nonzero().flatten().tolist():
        if counts[target] < 3:
            continue
        pixels = reconstruct_trigger(x, y, flagged, target, pixels=config.trigger_pixels)
        others = data.x_test[data.y_test != target]
        rate = (predict(model, stamp(others, pixels)) == target).float().mean().item()
        if rate > best[0]:
            best = (rate, target, pixels)
    rate, target, pixels = best
    baseline = (predict(model, x_other) == suspect).float().mean().item() if len(y_other) else 0.0
    severity = "high" if rate >= 0.5 else "medium" if rate >= 0.25 or share >= 0.5 else "low"
    summary = (
        f"The scan flags {len(flagged)} of {len(y)} training rows, {share:.0%} of them labelled {suspect}. "
        f"A trigger rebuilt from the flagged rows sends {rate:.0%} of held-out inputs of other classes to class {target}."
    )
    evidence = {
        "method": config.poison_method,
        "flagged_rows": len(flagged),
        "suspected_class": suspect,
        "share_of_flagged_in_class": share,
        "trigger_class": target,
        "trigger_features": pixels.tolist(),
        "trigger_success": rate,
        "untriggered_rate_to_class": baseline,
        "flagged_index": flagged.tolist(),
    }
    return Finding("training_security", severity, summary, evidence, _recommendation(severity))
