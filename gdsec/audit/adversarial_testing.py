"""Audit question 2, adversarial testing: how does the model hold up against the strongest attacks?

:func:`gdsec.attacks.evaluate` (the AutoAttack-style ensemble: APGD-CE, APGD-T, FAB-T, Square, each
on the rows still robust) runs on the whole trusted split at every budget, on the audit's
scale-free view (:class:`gdsec.audit.NormalisedLogits`, one temperature calibrated on the trusted
rows) so that rescaling the logits cannot change the result. After a flag that says the gradients
cannot be trusted, ``evaluate`` adds the gradient-free members (Square, the decision-based
HopSkipJump) to the worst case. The severity grades the per-example worst-case robust accuracy at
the deployment budget and rises one level on any of ``evaluate``'s flags (a random forward pass,
zero gradients, a backward pass that disagrees with the forward pass, flat scores, Square beating
the gradient attacks, accuracy rising with ``eps``), on probability-valued outputs, and on DeepFool
flipping predictions without moving. When a flag says the gradients cannot be trusted, the
adaptive attacks of question 4 (transfer, BPDA, a surrogate distilled on the model's decisions,
HopSkipJump) also join the worst case at the deployment budget.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gdsec.attacks import (
    PROBE_ROWS,
    Evaluation,
    deepfool,
    evaluate,
    is_randomised,
    looks_like_probabilities,
    perturbation_norm,
)
from gdsec.attacks.evaluation import MASKING_FLAGS
from gdsec.audit.adaptive import NormalisedLogits, adaptive_robust
from gdsec.audit.config import AuditConfig, eval_rows, provenance
from gdsec.audit.references import transfer_surrogate
from gdsec.audit.report import SEVERITIES, Finding, grade
from gdsec.data import Split
from gdsec.seeds.stats import wilson_interval
from gdsec.train import predict

__all__ = ["audit_adversarial_testing", "raise_severity"]


def raise_severity(severity: str, steps: int = 1) -> str:
    """``severity`` raised by ``steps`` levels (at most "high").

    Taught in chapter 10.
    """
    return SEVERITIES[min(SEVERITIES.index(severity) + steps, len(SEVERITIES) - 1)]


def _evaluation(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, config: AuditConfig
) -> Evaluation:
    """``evaluate`` on the audit's view (calibrated on ``(x, y)``) with the config's budget."""
    view = NormalisedLogits(model, x, y)
    return evaluate(
        view, x, y, eps, budget=config.budget, seed=config.seed, batch_size=config.batch_size
    )


def _deepfool_median(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rows: int) -> float:
    """Median L2 size of the DeepFool perturbations that flip a prediction on the first ``rows``
    rows (inf if none does), on the view calibrated on ``(x, y)``."""
    target = NormalisedLogits(model, x, y)
    x = x[:rows]
    x_df = deepfool(target, x)
    sizes = perturbation_norm(x, x_df, norm="2")[predict(target, x_df) != predict(target, x)]
    return sizes.median().item() if len(sizes) else math.inf


def _with_adaptive(
    model: nn.Module, split: Split, main: Evaluation, config: AuditConfig
) -> tuple[torch.Tensor, list[str]]:
    """The rows ``main`` left robust that also survive question 4's adaptive attacks (transfer from
    the reference, BPDA, a surrogate distilled on the model's decisions, HopSkipJump), and their names."""
    x, y = eval_rows(split, config)
    after, _ = adaptive_robust(
        model,
        x,
        y,
        config.eps,
        standing=main.robust,
        surrogate=transfer_surrogate(split, config),
        budget=config.budget,
        randomised=is_randomised(model, x[:PROBE_ROWS]),
        signs=True,
        seed=config.seed,
        batch_size=config.batch_size,
    )
    return list(after.values())[-1], list(after)


def audit_adversarial_testing(model: nn.Module, split: Split, config: AuditConfig) -> Finding:
    """Per-example worst-case robust accuracy (gdsec.attacks.evaluate) at every budget, its interval and flags.

    Taught in chapter 10.
    """
    x, y = eval_rows(split, config)
    check_rows = config.budget.check_rows
    budgets = sorted({*config.eps_grid, config.eps})
    runs = {f"{eps:g}": _evaluation(model, x, y, eps, config) for eps in budgets}
    main = runs[f"{config.eps:g}"]
    flags = list(main.flags)
    if looks_like_probabilities(model, x[:PROBE_ROWS]):
        flags.append(
            "probabilities: the raw outputs are in [0, 1] and sum to 1; the gradients of a softmax output saturate"
        )
    median_l2 = (
        math.nan
        if is_randomised(model, x[:PROBE_ROWS])
        else _deepfool_median(model, x, y, check_rows)
    )
    if median_l2 < 1e-3:
        flags.append(
            f"deepfool-zero: the median DeepFool perturbation that flips a prediction has L2 size {median_l2:.2g}"
        )
    members, robust = list(main.accuracy_after), main.robust
    if any(f.startswith(MASKING_FLAGS) for f in main.flags):  # the gradients cannot be trusted
        robust, adaptive = _with_adaptive(model, split, main, config)
        members += [a for a in adaptive if a not in members]
    robust_accuracy = float(robust.float().mean())
    ci95 = wilson_interval(int(robust.sum()), main.n)
    measured = grade(robust_accuracy, high=0.5, medium=0.75)
    severity = raise_severity(measured) if flags else measured
    low, high = ci95
    summary = (
        f"Per-example worst-case robust accuracy {robust_accuracy:.0%} (95 % interval {low:.0%}-{high:.0%}) "
        f"of {main.n} trusted rows at L-inf eps = {config.eps:g}, from {main.clean_accuracy:.0%} clean, under "
        f"{', '.join(members)}; median DeepFool L2 size {median_l2:.2f}."
        + (
            f" {len(flags)} flag(s) raise the severity: {'; '.join(f.split(':')[0] for f in flags)}."
            if flags
            else ""
        )
    )
    recommendation = (
        "Adversarially train (PGD, Madry-style) at the deployment budget and re-test; read each flag and run the "
        "adaptive attack it calls for before quoting any robust accuracy."
        if severity != "low"
        else "Keep this curve in the release checklist and re-run it on every retraining; a stronger, adaptive "
        "attack may still do better (passing is necessary, never sufficient)."
    )
    evidence = {
        "robust_accuracy": robust_accuracy,
        "robust_accuracy_ci95": ci95,
        "ensemble_robust_accuracy": main.robust_accuracy,
        "attacks": members,
        "clean_accuracy": main.clean_accuracy,
        "robust_accuracy_by_eps": {
            k: robust_accuracy if r is main else r.robust_accuracy for k, r in runs.items()
        },
        "ci95_by_eps": {k: ci95 if r is main else r.ci95 for k, r in runs.items()},
        "accuracy_after_attack": main.accuracy_after,
        "flags": flags,
        "deepfool_median_l2": median_l2,
        "rows": main.n,
        **provenance(
            main.n,
            config,
            ("steps", "fab_steps", "restarts", "square_steps", "draws", "check_rows"),
        ),
    }
    return Finding("adversarial_testing", severity, summary, evidence, recommendation)
