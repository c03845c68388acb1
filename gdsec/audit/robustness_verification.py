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

import torch
from torch import nn

from gdsec.attacks.evaluate import evaluate, wilson_interval
from gdsec.audit.adaptive import NormalisedLogits, adaptive_robust, is_randomised
from gdsec.audit.config import AuditConfig, eval_rows, provenance
from gdsec.audit.references import reference_models
from gdsec.audit.report import Finding
from gdsec.data import Split
from gdsec.masking import eot, input_gradient_zero_fraction

__all__ = ["check_robustness_verification"]

_ZERO_SHARE = 0.05  # a zero input gradient on this share of the correctly classified rows is a warning sign

_ADVICE = {
    "high": "Do not report white-box robustness for this model: the adaptive attacks broke it. Report the "
    "adaptive number, remove the masking component, or train for robustness (chapter 6).",
    "medium": "The evaluation may be inflated and no adaptive attack reached the suspect component: write one "
    "(BPDA through it, EOT over its randomness) before trusting any robustness number.",
    "low": "The white-box and adaptive attacks agree. Passing is necessary, never sufficient: an attack "
    "designed for this model may still do better.",
}


def _surrogate(data: Split, config: AuditConfig) -> nn.Module:
    """The transfer surrogate: the one given, or the first clean reference (trained on the trusted split)."""
    if config.surrogate is not None:
        return config.surrogate
    references = config.references or reference_models(data, seeds=1, seed=config.seed)
    return references[0]


def check_robustness_verification(model: nn.Module, data: Split, config: AuditConfig) -> Finding:
    """White-box evaluation against adaptive attacks (transfer, BPDA, EOT) when gradients look hidden.

    Taught in chapter 10.
    """
    x, y = eval_rows(data, config)
    white = evaluate(
        NormalisedLogits(model), x, y, config.eps, attacks=("apgd-ce", "apgd-t"), steps=config.pgd_steps,
        restarts=config.restarts, eot_samples=config.eot_samples, check_rows=0, seed=config.seed,
    )
    randomised = is_randomised(model, x[:100])
    right = torch.tensor([b != "clean" for b in white.broken_by])
    score = eot(model, samples=config.eot_samples) if randomised else model
    zero = input_gradient_zero_fraction(NormalisedLogits(score), x[right], y[right]) if right.any() else 0.0
    robust, suspects = adaptive_robust(
        model, x, y, config.eps, surrogate=_surrogate(data, config), steps=config.pgd_steps,
        eot_samples=config.eot_samples, randomised=randomised, seed=config.seed,
    )
    adaptive = white.robust.clone()
    for kept in robust.values():
        adaptive &= kept
    n = len(y)
    by_attack = {name: float((white.robust & kept).sum()) / n for name, kept in robust.items()}
    adaptive_acc, ci95 = int(adaptive.sum()) / n, wilson_interval(int(adaptive.sum()), n)
    gap = white.robust_accuracy - adaptive_acc
    hidden = zero >= _ZERO_SHARE
    signs = (["random forward pass"] if randomised else []) + ([f"zero input gradient on {zero:.0%} of rows"] if hidden else [])
    reached = not hidden or bool(suspects)  # EOT reaches randomness; only BPDA reaches a zero gradient
    severity = "high" if gap > config.adaptive_tol else "medium" if signs and not reached else "low"
    summary = (
        f"White-box APGD leaves {white.robust_accuracy:.0%} of {n} trusted rows at eps = {config.eps:g}; "
        f"with the adaptive attacks ({', '.join(robust)}) {adaptive_acc:.0%} "
        f"(95 % interval {ci95[0]:.0%}-{ci95[1]:.0%})."
        + (f" Warning signs: {'; '.join(signs)}." if signs else "")
        + (" The adaptive attacks broke what the white-box attacks missed: the robustness is masked." if severity == "high" else "")
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
        **provenance(n, config, ("pgd_steps", "restarts", "eot_samples")),
    }
    return Finding("robustness_verification", severity, summary, evidence, _ADVICE[severity])
