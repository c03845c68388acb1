"""Audit question 1, gradient exposure: what can an outsider do with what the model returns?"""

from __future__ import annotations

import math

from torch import nn

from gdsec.attacks import pgd, robust_accuracy, square_attack
from gdsec.audit.adaptive import NormalisedLogits
from gdsec.audit.config import AuditConfig, eval_rows, provenance
from gdsec.audit.report import SEVERITIES, Finding, grade
from gdsec.data import Split
from gdsec.leakage import client_gradients, dlg, reconstruction_errors
from gdsec.train import accuracy

__all__ = ["audit_gradient_exposure"]

_RECOMMENDATIONS = {
    "gradients": "Never return gradients (or per-example updates) to callers; if training must be shared, "
    "aggregate securely and add DP noise.",
    "logits": "Return labels or rounded top-1 scores only, rate-limit and monitor queries; "
    "assume a query-only attacker reaches the measured robust accuracy.",
    "scores": "Round or drop scores, rate-limit and monitor queries; assume the measured query-only attack.",
    "labels": "Keep returning labels only; still test with transfer and decision-based attacks.",
}


def _gradient_leak(model: nn.Module, split: Split, rows: int = 2) -> float:
    """Mean DLG reconstruction error over the first ``rows`` training examples, each from its own gradient."""
    n_classes = int(split.y_train.max().item()) + 1
    errors = []
    for i in range(min(rows, split.x_train.shape[0])):
        x, y = split.x_train[i : i + 1], split.y_train[i : i + 1]
        try:
            x_rec, _ = dlg(
                model, client_gradients(model, x, y), tuple(x.shape), n_classes=n_classes
            )
        except (
            ValueError
        ):  # a model without a recognisable last layer: DLG's label inference does not apply
            return math.nan
        errors.append(reconstruction_errors(x_rec, x).item())
    return sum(errors) / len(errors)


def audit_gradient_exposure(model: nn.Module, split: Split, config: AuditConfig) -> Finding:
    """What the exposed interface allows: a white-box (PGD) vs a query-only (Square) attacker, on normalised logits.

    Taught in chapter 10.
    """
    x, y = eval_rows(split, config)
    eps, seed = config.eps, config.seed
    clean = accuracy(model, x, y)
    model = NormalisedLogits(model)  # the same decisions; the logit scale cannot hide the gradient
    whitebox = robust_accuracy(
        model, x, y, lambda m, xs, ys: pgd(m, xs, ys, eps, steps=config.budget.steps, seed=seed)
    )
    query = robust_accuracy(
        model,
        x,
        y,
        lambda m, xs, ys: square_attack(
            m, xs, ys, eps, steps=config.budget.square_steps, seed=seed
        ),
    )
    achievable = {
        "gradients": min(whitebox, query),
        "logits": query,
        "scores": query,
        "labels": query,
    }[config.exposure]
    severity = grade(achievable / max(clean, 1e-12), high=0.5, medium=0.8)
    if config.exposure == "labels" and severity != "low":
        severity = SEVERITIES[
            SEVERITIES.index(severity) - 1
        ]  # score-based attacks need more than labels
    leak = math.nan
    if config.exposure == "gradients":
        severity = "high"  # training gradients also leak the data itself (chapter 9)
        leak = _gradient_leak(model.model, split)
    summary = (
        f"The API returns {config.exposure}. A query-only attacker "
        f"({config.budget.square_steps} queries, no gradients) "
        f"leaves {query:.0%} accuracy, a white-box PGD attacker {whitebox:.0%}, from {clean:.0%} clean."
    )
    if query + 0.03 < whitebox:
        summary += " The query-only attacker does better than the white-box one: hiding gradients is no protection."
    if config.exposure == "gradients":
        summary += f" From one training example's gradient, DLG rebuilds the input with mean squared error {leak:.2g}."
    evidence = {
        "exposure": config.exposure,
        "clean_accuracy": clean,
        "whitebox_pgd_accuracy": whitebox,
        "query_only_square_accuracy": query,
        "queries_per_input": config.budget.square_steps,
        "eps": config.eps,
        "rows": len(y),
        **provenance(len(y), config, ("steps", "square_steps")),
    }
    if config.exposure == "gradients":
        evidence["dlg_reconstruction_mse"] = leak
    return Finding(
        "gradient_exposure", severity, summary, evidence, _RECOMMENDATIONS[config.exposure]
    )
