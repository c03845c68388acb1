"""Audit question 4, robustness verification: is the measured robustness real, or are gradients hidden?

The white-box evaluation (APGD-CE and APGD-T of :func:`gdsec.attacks.evaluate`, on normalised
logits) is what a careful but non-adaptive evaluator reports. Two signs say it may be inflated: a
forward pass that is random, and input gradients that are exactly zero (on at least 5 % of the
correctly classified rows: a masking layer zeroes nearly all of them). Adaptive attacks then
decide: transfer from a surrogate trained on the trusted split (always run), BPDA through every
suspect layer, and EOT over the randomness. The check fails ("high") when they break more than
``adaptive_tol`` of the rows the white-box attacks missed, and stays at least "medium" when a sign
is present but no adaptive attack could reach its cause.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from gdsec.attacks import (
    PROBE_ROWS,
    MeanOfDraws,
    evaluate,
    is_randomised,
    zero_gradient_rows,
)
from gdsec.audit.adaptive import NormalisedLogits, adaptive_robust
from gdsec.audit.config import AuditConfig, eval_rows, provenance
from gdsec.audit.references import reference_models
from gdsec.audit.report import Finding
from gdsec.data import Split
from gdsec.seeds.stats import wilson_interval

__all__ = ["audit_robustness_verification"]

_ZERO_SHARE = (
    0.05  # a zero input gradient on this share of the correctly classified rows is a warning sign
)

_ADVICE = {
    "high": "Do not report white-box robustness for this model: the adaptive attacks broke it. Report the "
    "adaptive number, remove the masking component, or train for robustness (chapter 6).",
    "medium": "The evaluation may be inflated and no adaptive attack reached the suspect component: write one "
    "(BPDA through it, EOT over its randomness) before trusting any robustness number.",
    "low": "The white-box and adaptive attacks agree. Passing is necessary, never sufficient: an attack "
    "designed for this model may still do better.",
}


def _surrogate(split: Split, config: AuditConfig) -> nn.Module:
    """The transfer surrogate: the one given, or the first clean reference (trained on the trusted split)."""
    if config.surrogate is not None:
        return config.surrogate
    references = config.references or reference_models(split, n_seeds=1, seed=config.seed)
    return references[0]


def audit_robustness_verification(model: nn.Module, split: Split, config: AuditConfig) -> Finding:
    """White-box evaluation against adaptive attacks (transfer, BPDA, EOT) when gradients look hidden.

    Taught in chapter 10.
    """
    x, y, budget = *eval_rows(split, config), config.budget
    white = evaluate(
        NormalisedLogits(model),
        x,
        y,
        config.eps,
        attacks=("apgd-ce", "apgd-t"),
        budget=replace(budget, check_rows=0),
        seed=config.seed,
    )
    randomised = is_randomised(model, x[:PROBE_ROWS])
    right = torch.tensor([b != "clean" for b in white.broken_by])
    score = NormalisedLogits(MeanOfDraws(model, budget.draws) if randomised else model)
    zero = (
        zero_gradient_rows(score, x[right], y[right]).float().mean().item() if right.any() else 0.0
    )
    robust, suspects = adaptive_robust(
        model,
        x,
        y,
        config.eps,
        surrogate=_surrogate(split, config),
        steps=budget.steps,
        draws=budget.draws,
        randomised=randomised,
        seed=config.seed,
    )
    adaptive = white.robust.clone()
    for kept in robust.values():
        adaptive &= kept
    n = len(y)
    by_attack = {name: float((white.robust & kept).sum()) / n for name, kept in robust.items()}
    adaptive_acc, ci95 = int(adaptive.sum()) / n, wilson_interval(int(adaptive.sum()), n)
    gap = white.robust_accuracy - adaptive_acc
    hidden = zero >= _ZERO_SHARE
    signs = (["random forward pass"] if randomised else []) + (
        [f"zero input gradient on {zero:.0%} of rows"] if hidden else []
    )
    reached = not hidden or bool(
        suspects
    )  # EOT reaches randomness; only BPDA reaches a zero gradient
    severity = "high" if gap > config.adaptive_tol else "medium" if signs and not reached else "low"
    summary = (
        f"White-box APGD leaves {white.robust_accuracy:.0%} of {n} trusted rows at eps = {config.eps:g}; "
        f"with the adaptive attacks ({', '.join(robust)}) {adaptive_acc:.0%} "
        f"(95 % interval {ci95[0]:.0%}-{ci95[1]:.0%})."
        + (f" Warning signs: {'; '.join(signs)}." if signs else "")
        + (
            " The adaptive attacks broke what the white-box attacks missed: the robustness is masked."
            if severity == "high"
            else ""
        )
        + (" No suspect layer could be located for BPDA." if severity == "medium" else "")
    )
    evidence = {
        "masked": severity == "high",
        "whitebox_accuracy": white.robust_accuracy,
        "adaptive_accuracy": adaptive_acc,
        "adaptive_accuracy_ci95": ci95,
        "accuracy_after_adaptive": by_attack,
        "gap": gap,
        "randomised": randomised,
        "zero_gradient_fraction": zero,
        "suspect_layers": suspects,
        "whitebox_flags": list(white.flags),
        **provenance(n, config, ("steps", "restarts", "draws")),
    }
    return Finding("robustness_verification", severity, summary, evidence, _ADVICE[severity])
