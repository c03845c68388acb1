"""Audit question 1, gradient exposure: what can an outsider do with what the model returns?

Every attack runs on the audit's scale-free view (:class:`gdsec.audit.NormalisedLogits`, one
temperature calibrated on the trusted rows). A white-box PGD attacker and a query-only Square
attacker are measured; an API that returns labels only is measured with the label-only
HopSkipJump (:func:`gdsec.attacks.hop_skip_jump`). When a check says the scores or gradients cannot
be trusted (a random forward pass, zero gradients, a backward pass that disagrees with the forward
pass, flat scores), the decision-based number and question 4's adaptive attacks are measured too
and the attacker gets the best of them (an adversarial example BPDA finds is one a patient
outsider can find from the decisions: a verdict that untrustworthy scores buy would be a bug);
flat scores, which leave Square nothing to descend, also raise the severity one level: they
defeat Square, not an attacker who reads the decisions.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gdsec.attacks import PROBE_ROWS, is_randomised, pgd, robust_accuracy, square_attack
from gdsec.attacks.batches import in_batches
from gdsec.attacks.checks import zero_gradient_rows
from gdsec.attacks.continuity import consistency_flags
from gdsec.attacks.decision import hop_skip_jump
from gdsec.audit.adaptive import NormalisedLogits, adaptive_robust
from gdsec.audit.adversarial_testing import raise_severity
from gdsec.audit.config import AuditConfig, eval_rows, provenance
from gdsec.audit.references import transfer_surrogate
from gdsec.audit.report import Finding, grade
from gdsec.data import Split
from gdsec.leakage import client_gradients, dlg, reconstruction_errors
from gdsec.train import accuracy, predict

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


def _untrusted(
    view: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int
) -> list[str]:
    """The names of the checks that say the view's scores or gradients cannot be trusted."""
    probe, labels = x[:PROBE_ROWS], y[:PROBE_ROWS]
    if is_randomised(view, probe):
        return ["randomised"]
    names = [flag.split(":")[0] for flag in consistency_flags(view, probe, eps, seed=seed)]
    return names + (["zero-gradient"] if zero_gradient_rows(view, probe, labels).any() else [])


def audit_gradient_exposure(model: nn.Module, split: Split, config: AuditConfig) -> Finding:
    """What the exposed interface allows: white-box (PGD), query-only (Square) and label-only
    (HopSkipJump) attackers on the audit's scale-free view.

    Taught in chapter 10.
    """
    x, y = eval_rows(split, config)
    eps, seed = config.eps, config.seed
    clean = accuracy(model, x, y)
    # the same decisions; the logit scale cannot hide anything
    model = NormalisedLogits(model, x, y)
    batch_size = config.batch_size  # rows per attack call: memory bounded by it
    whitebox = robust_accuracy(
        model,
        x,
        y,
        in_batches(
            lambda m, xs, ys: pgd(m, xs, ys, eps, steps=config.budget.steps, seed=seed), batch_size
        ),
    )
    query = robust_accuracy(
        model,
        x,
        y,
        in_batches(
            lambda m, xs, ys: square_attack(
                m, xs, ys, eps, steps=config.budget.square_steps, seed=seed
            ),
            batch_size,
        ),
    )
    flags = _untrusted(model, x, y, eps, seed)
    decision = math.nan
    if flags or config.exposure == "labels":
        queries = config.budget.square_steps
        decision = robust_accuracy(
            model,
            x,
            y,
            in_batches(
                lambda m, xs, ys: hop_skip_jump(m, xs, ys, eps, queries=queries, seed=seed),
                batch_size,
            ),
        )
    achievable = {
        "gradients": min(whitebox, query),
        "logits": query,
        "scores": query,
        "labels": decision,
    }[config.exposure]
    adaptive = math.nan
    if flags:  # the scores cannot be trusted: question 4's adaptive attacks join (best number)
        after, _ = adaptive_robust(
            model,
            x,
            y,
            eps,
            standing=predict(model, x) == y,
            surrogate=transfer_surrogate(split, config),
            budget=config.budget,
            randomised="randomised" in flags,
            signs=True,
            seed=seed,
            batch_size=batch_size,
        )
        adaptive = list(after.values())[-1].float().mean().item()
        achievable = min(achievable, decision, adaptive)
    severity = grade(achievable / max(clean, 1e-12), high=0.5, medium=0.8)
    if "flat-output" in flags:  # flat scores leave Square nothing to descend: its number is void
        severity = raise_severity(severity)
    leak = math.nan
    if config.exposure == "gradients":
        severity = "high"  # training gradients also leak the data itself (chapter 9)
        leak = _gradient_leak(model.model, split)
    summary = (
        f"The API returns {config.exposure}. A query-only attacker "
        f"({config.budget.square_steps} queries, no gradients) "
        f"leaves {query:.0%} accuracy, a white-box PGD attacker {whitebox:.0%}, from {clean:.0%} clean."
    )
    if not math.isnan(decision):
        summary += (
            f" A label-only HopSkipJump attacker ({config.budget.square_steps} queries) leaves "
            f"{decision:.0%}."
        )
    if flags:
        summary += (
            f" The scores or gradients cannot be trusted ({', '.join(flags)}): the decision-based "
            f"attacker and question 4's adaptive attacks ({adaptive:.0%} left) count"
            + (", and flat scores raise the severity one level." if "flat-output" in flags else ".")
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
        "decision_based_accuracy": decision,
        "adaptive_accuracy": adaptive,
        "flags": flags,
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
