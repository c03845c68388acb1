"""Audit question 4, robustness verification: is the measured robustness real, or are gradients hidden?

The white-box evaluation (APGD-CE and APGD-T of :func:`gdsec.attacks.evaluate`, on normalised
logits) is what a careful but non-adaptive evaluator reports. Signs say it may be inflated: a
forward pass that is random, input gradients that are exactly zero (on at least 5 % of the
correctly classified rows: a masking layer zeroes nearly all of them), and the evaluation's flags
in :data:`GRADIENT_FLAGS` (a gradient that disagrees with finite differences, flat scores).
Adaptive attacks then decide, each on the rows still standing: transfer from a surrogate trained on
the trusted split (always run); with a sign, BPDA through every step that blocks the gradient
(located in a module tree, a ``torch.fx`` graph or TorchScript), EOT over the randomness, transfer
from a student distilled on the model's decisions and a decision-based attack. The check fails
("high") when they break more than ``adaptive_tol`` of the rows the white-box attacks missed, and
stays at least "medium" when a sign is present but no adaptive attack could reach its cause.
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
from gdsec.audit.references import transfer_surrogate
from gdsec.audit.report import Finding
from gdsec.data import Split
from gdsec.seeds.stats import wilson_interval

__all__ = ["GRADIENT_FLAGS", "audit_robustness_verification"]

_ZERO_SHARE = (
    0.05  # a zero input gradient on this share of the correctly classified rows is a warning sign
)

#: The flags of :func:`gdsec.attacks.evaluate` (names before ':') that say its gradient attacks
#: cannot be trusted: each switches on the attacks that do not follow the model's gradient.
GRADIENT_FLAGS = (
    "zero-gradient",
    "randomised",
    "inconsistent-gradient",
    "flat-output",
    "discontinuous-scores",
    "square-beats-white-box",
)

_ADVICE = {
    "high": "Do not report white-box robustness for this model: the adaptive attacks broke it. Report the "
    "adaptive number, remove the masking component, or train for robustness (chapter 6).",
    "medium": "The evaluation may be inflated and no adaptive attack reached the suspect component: write one "
    "(BPDA through it, EOT over its randomness) before trusting any robustness number.",
    "low": "The white-box and adaptive attacks agree. Passing is necessary, never sufficient: an attack "
    "designed for this model may still do better.",
}


def _signs(white_flags: tuple[str, ...], randomised: bool, zero: float) -> dict[str, str]:
    """The warning signs that the gradient cannot be trusted, by flag name, with what shows them."""
    signs = {f.split(":", 1)[0]: f for f in white_flags if f.split(":", 1)[0] in GRADIENT_FLAGS}
    if randomised:
        signs.setdefault("randomised", "random forward pass")
    if zero >= _ZERO_SHARE:
        signs["zero-gradient"] = f"zero input gradient on {zero:.0%} of rows"
    return signs


def _unreached(signs: dict[str, str], ran: dict[str, torch.Tensor]) -> list[str]:
    """The signs no adaptive attack reached: EOT reaches randomness, BPDA a blocked gradient, BPDA or
    the decision-based attack a gradient or score that cannot be trusted."""
    reach = {"zero-gradient": ("bpda",), "inconsistent-gradient": ("bpda", "decision")}
    reach |= {"flat-output": ("bpda", "decision"), "square-beats-white-box": ("bpda", "decision")}
    reach |= {"discontinuous-scores": ("bpda", "decision")}
    return [s for s in signs if s != "randomised" and not any(a in ran for a in reach.get(s, ()))]


def audit_robustness_verification(model: nn.Module, split: Split, config: AuditConfig) -> Finding:
    """White-box evaluation against adaptive attacks (transfer, BPDA, EOT, a distilled surrogate and a
    decision-based attack) when the gradient cannot be trusted.

    Taught in chapter 10.
    """
    x, y, budget = *eval_rows(split, config), config.budget
    white = evaluate(
        NormalisedLogits(model, x, y),
        x,
        y,
        config.eps,
        attacks=("apgd-ce", "apgd-t"),
        budget=replace(budget, check_rows=0),
        seed=config.seed,
        batch_size=config.batch_size,
    )
    randomised = is_randomised(model, x[:PROBE_ROWS])
    right = torch.tensor([b != "clean" for b in white.broken_by], device=x.device)
    score = NormalisedLogits(MeanOfDraws(model, budget.draws) if randomised else model, x, y)
    zero = (
        zero_gradient_rows(score, x[right], y[right]).float().mean().item() if right.any() else 0.0
    )
    signs = _signs(white.flags, randomised, zero)
    after, notes = adaptive_robust(
        model,
        x,
        y,
        config.eps,
        standing=white.robust,
        surrogate=transfer_surrogate(split, config),
        budget=budget,
        randomised=randomised,
        signs=bool(signs),
        seed=config.seed,
        batch_size=config.batch_size,
    )
    n, adaptive = len(y), list(after.values())[-1]
    by_attack = {name: float(kept.sum()) / n for name, kept in after.items()}
    adaptive_acc, ci95 = int(adaptive.sum()) / n, wilson_interval(int(adaptive.sum()), n)
    gap = white.robust_accuracy - adaptive_acc
    unreached = _unreached(signs, after)
    severity = "high" if gap > config.adaptive_tol else "medium" if unreached else "low"
    summary = (
        f"White-box APGD leaves {white.robust_accuracy:.0%} of {n} trusted rows at eps = {config.eps:g}; "
        f"with the adaptive attacks ({', '.join(after)}) {adaptive_acc:.0%} "
        f"(95 % interval {ci95[0]:.0%}-{ci95[1]:.0%})."
        + (f" Warning signs: {'; '.join(signs)}." if signs else "")
        + (f" BPDA {notes['bpda']}." if "bpda" in notes else "")
        + (
            " The adaptive attacks broke what the white-box attacks missed: the robustness is masked."
            if severity == "high"
            else ""
        )
        + (f" No adaptive attack reached: {', '.join(unreached)}." if severity == "medium" else "")
    )
    evidence = {
        "masked": severity == "high",
        "whitebox_accuracy": white.robust_accuracy,
        "adaptive_accuracy": adaptive_acc,
        "adaptive_accuracy_ci95": ci95,
        "accuracy_after_adaptive": by_attack,
        "adaptive_attacks": notes,
        "gap": gap,
        "randomised": randomised,
        "zero_gradient_fraction": zero,
        "signs": list(signs),
        "unreached": unreached,
        "bpda": notes.get("bpda", "not tried: no warning sign"),
        "whitebox_flags": list(white.flags),
        **provenance(n, config, ("steps", "restarts", "draws", "square_steps")),
    }
    return Finding("robustness_verification", severity, summary, evidence, _ADVICE[severity])
