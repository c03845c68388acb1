"""Audit question 5, convergence properties: where did training stop, and what kind of minimum is it?"""

from __future__ import annotations

import math

import torch
from torch import nn

from gdsec.audit.config import AuditConfig
from gdsec.audit.report import Finding
from gdsec.data import Split
from gdsec.landscape import sharpness
from gdsec.models import eval_mode
from gdsec.train import accuracy, loss_gradient

__all__ = ["check_convergence_properties"]


def check_convergence_properties(model: nn.Module, data: Split, config: AuditConfig) -> Finding:
    """Final training loss, gradient norm, sharpness (top Hessian eigenvalue) and generalisation gap.

    Taught in chapter 10.
    """
    x, y = data.x_train, data.y_train
    with eval_mode(model), torch.no_grad():
        final_loss = nn.functional.cross_entropy(model(x), y).item()
    grad_norm = loss_gradient(model, x, y).norm().item()
    rows = min(config.sharpness_rows, len(y))
    top_eigenvalue = sharpness(model, x[:rows], y[:rows], iters=20, seed=config.seed)
    train_acc, test_acc = accuracy(model, x, y), accuracy(model, data.x_test, data.y_test)
    gap = train_acc - test_acc
    problems = []
    if not math.isfinite(final_loss) or not math.isfinite(grad_norm):
        problems.append("non-finite loss or gradient")
    if grad_norm > config.gradient_tol:
        problems.append(f"gradient norm {grad_norm:.3g} above {config.gradient_tol:g}")
    if gap > config.generalisation_gap:
        problems.append(f"train-test gap {gap:.0%}")
    severity = "high" if problems and problems[0].startswith("non-finite") else "medium" if problems else "low"
    summary = (
        f"Final training loss {final_loss:.3g}, gradient norm {grad_norm:.3g}, sharpness {top_eigenvalue:.3g}; "
        f"train/test accuracy {train_acc:.0%}/{test_acc:.0%}."
        + (f" Concerns: {'; '.join(problems)}." if problems else "")
    )
    recommendation = (
        "Check that training converged to an ordinary minimum: loss curves, gradient norm, sharpness "
        "against a clean retraining, and the data that shaped it."
        if problems
        else "Record these values as the model's baseline; a retraining that moves them far needs an explanation."
    )
    evidence = {
        "final_loss": final_loss,
        "gradient_norm": grad_norm,
        "sharpness": top_eigenvalue,
        "train_accuracy": train_acc,
        "test_accuracy": test_acc,
    }
    return Finding("convergence_properties", severity, summary, evidence, recommendation)
