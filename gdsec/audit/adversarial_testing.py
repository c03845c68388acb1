"""Audit question 2, adversarial testing: how does the model hold up against the strongest attacks?"""

from __future__ import annotations

import math

import torch
from torch import nn

from gdsec.attacks import deepfool, fgsm, perturbation_norm, pgd, robust_accuracy, square_attack
from gdsec.audit.config import AuditConfig, eval_rows
from gdsec.audit.report import Finding, grade
from gdsec.data import Split
from gdsec.train import predict

__all__ = ["check_adversarial_testing"]


def _robust_accuracies(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, config: AuditConfig
) -> dict[str, float]:
    """Robust accuracy at budget ``eps`` under each attack of the battery (FGSM, PGD, Square)."""
    steps, queries, seed = config.pgd_steps, config.queries, config.seed
    return {
        "fgsm": robust_accuracy(model, x, y, lambda m, xs, ys: fgsm(m, xs, ys, eps)),
        "pgd": robust_accuracy(model, x, y, lambda m, xs, ys: pgd(m, xs, ys, eps, steps=steps, seed=seed)),
        "square": robust_accuracy(
            model, x, y, lambda m, xs, ys: square_attack(m, xs, ys, eps, queries=queries, seed=seed)
        ),
    }


def check_adversarial_testing(model: nn.Module, data: Split, config: AuditConfig) -> Finding:
    """Robust accuracy against the strongest of FGSM, PGD and Square at every budget, plus DeepFool sizes.

    Taught in chapter 10.
    """
    x, y = eval_rows(data, config)
    curve: dict[str, float] = {}
    strongest: dict[str, str] = {}
    for eps in config.eps_grid:
        results = _robust_accuracies(model, x, y, eps, config)
        name = min(results, key=results.get)
        curve[f"{eps:g}"], strongest[f"{eps:g}"] = results[name], name
    x_df = deepfool(model, x)
    flipped = predict(model, x_df) != predict(model, x)
    sizes = perturbation_norm(x, x_df, norm="2")[flipped]
    median_l2 = sizes.median().item() if len(sizes) else math.inf
    at_eps = curve.get(f"{config.eps:g}", min(curve.values()))
    severity = grade(at_eps, high=0.5, medium=0.75)
    summary = (
        f"Worst-case robust accuracy {at_eps:.0%} at L-inf eps = {config.eps:g} "
        f"(strongest attack: {strongest.get(f'{config.eps:g}', 'n/a')}); the median DeepFool "
        f"perturbation that flips a prediction has L2 size {median_l2:.2f}."
    )
    recommendation = (
        "Adversarially train (PGD, Madry-style) at the deployment budget and re-test with every attack; "
        "report the worst case, never the attack that looks best."
        if severity != "low"
        else "Keep the robust accuracy curve in the release checklist and re-run it on every retraining."
    )
    evidence = {
        "robust_accuracy_by_eps": curve,
        "strongest_attack_by_eps": strongest,
        "deepfool_median_l2": median_l2,
        "rows": len(y),
    }
    return Finding("adversarial_testing", severity, summary, evidence, recommendation)
