"""Audit question 5, convergence properties: where did training stop, and what kind of minimum is it?

Every number here is scale-invariant, so a copy of the model with its logits multiplied by 1,000
gets the same evidence: a temperature is fitted on the trusted split (the rescaled copy's is 1,000
times larger), and the losses and the sharpness (largest Hessian eigenvalue, Lanczos) are those of
the logits divided by it. The sharpness is compared with clean reference models trained on the
trusted split, and the training loss with their loss on the audited training data (which they never
saw): a model that fits its own training data worse than clean models fit unseen data has not
converged. Sharpness is compared only when the model's parameters have the references' shapes:
a CNN is routinely ten times sharper than an MLP on the same data, which says nothing about how
it was trained. What sharpness can tell: a minimum far sharper than honest training reaches is unusual.
What it cannot: a flat minimum is no evidence of honesty (chapter 7's planted minimum is flatter
than the honest one), sharpness changes under reparametrisation, and neural nets routinely train at
the edge of stability, so "learning rate below 2 / sharpness" is no criterion.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gdsec.audit.config import AuditConfig, provenance
from gdsec.audit.references import reference_models
from gdsec.audit.report import Finding
from gdsec.data import Split
from gdsec.hessian import sharpness
from gdsec.train import accuracy

__all__ = ["Scaled", "audit_convergence_properties", "fit_temperature"]


class Scaled(nn.Module):
    """``model`` with its logits divided by ``temperature`` (no parameters of its own).

    Taught in chapter 10.
    """

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``x`` divided by the temperature."""
        return self.model(x) / self.temperature


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits of ``x`` without gradients, in float64."""
    with torch.no_grad():
        return model(x).double()


def fit_temperature(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The temperature T minimising the cross-entropy of ``model(x) / T`` on (x, y).

    A log-spaced grid relative to the logits' own spread, then a golden-section search on log T
    between the best grid point's neighbours, so rescaling the logits rescales T exactly and a
    logit that never matters (a constant far below the others) leaves it where it was.
    Taught in chapter 10.
    """
    z = _logits(model, x)
    spread = (z - z.mean(1, keepdim=True)).std().clamp_min(1e-30).item()
    grid = spread * torch.logspace(-3, 2, 201, dtype=torch.float64)

    def loss(t: float) -> float:
        return nn.functional.cross_entropy(z / t, y).item()

    best = int(torch.tensor([loss(float(t)) for t in grid]).argmin())
    low, high = math.log(grid[max(best - 1, 0)]), math.log(grid[min(best + 1, len(grid) - 1)])
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(40):  # the bracket shrinks to 0.618**40 of a grid step
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if loss(math.exp(a)) <= loss(math.exp(b)):
            high = b
        else:
            low = a
    return math.exp((low + high) / 2)


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, temperature: float) -> float:
    """Mean cross-entropy of the logits divided by ``temperature``."""
    return nn.functional.cross_entropy(_logits(model, x) / temperature, y).item()


def _reference_stats(
    split: Split, references: tuple[nn.Module, ...], rows: int, config: AuditConfig
) -> tuple[list[float], list[float]]:
    """Each clean reference's sharpness on its own training data (the trusted split) and its loss on the
    audited training data it never saw, both at the temperature fitted on the latter, as for the audited model."""
    x, y = split.x_test[:rows], split.y_test[:rows]
    sharp, losses = [], []
    for reference in references:
        temperature = fit_temperature(reference, split.x_train, split.y_train)
        sharp.append(
            sharpness(
                Scaled(reference, temperature),
                x,
                y,
                seed=config.seed,
                batch_size=config.batch_size,
            )
        )
        losses.append(_loss(reference, split.x_train, split.y_train, temperature))
    return sharp, losses


def _same_shapes(model: nn.Module, reference: nn.Module) -> bool:
    """Whether ``model`` and ``reference`` have parameters of the same shapes, in the same order."""
    return [p.shape for p in model.parameters()] == [p.shape for p in reference.parameters()]


def audit_convergence_properties(model: nn.Module, split: Split, config: AuditConfig) -> Finding:
    """Scale-invariant losses, sharpness against clean references, and the train-test gap.

    Taught in chapter 10.
    """
    x, y = split.x_train, split.y_train
    temperature = fit_temperature(model, split.x_test, split.y_test)
    train_loss, test_loss = (
        _loss(model, x, y, temperature),
        _loss(model, split.x_test, split.y_test, temperature),
    )
    rows = min(config.sharpness_rows, len(y))
    top = sharpness(
        Scaled(model, temperature),
        x[:rows],
        y[:rows],
        seed=config.seed,
        batch_size=config.batch_size,
    )
    references = config.references or reference_models(
        split, n_seeds=config.n_references, seed=config.seed
    )
    clean, clean_loss = _reference_stats(split, references, rows, config)
    ratio = top / max(max(clean), 1e-12)
    loss_ratio = train_loss / max(max(clean_loss), 1e-12)
    train_acc, test_acc = accuracy(model, x, y), accuracy(model, split.x_test, split.y_test)
    gap = train_acc - test_acc
    problems = []
    if not all(math.isfinite(v) for v in (train_loss, test_loss, top)):
        problems.append("non-finite loss or curvature")
    if gap > config.generalisation_gap:
        problems.append(f"train-test accuracy gap {gap:.0%} above {config.generalisation_gap:.0%}")
    if loss_ratio > 1.0:
        problems.append(
            f"training loss {loss_ratio:.2g} times the clean references' loss on data they never saw (not converged)"
        )
    comparable = _same_shapes(model, references[0])
    if ratio > config.sharpness_ratio and comparable:
        problems.append(f"sharpness {ratio:.3g} times the sharpest clean reference")
    severity = (
        "high"
        if problems and problems[0].startswith("non-finite")
        else "medium"
        if problems
        else "low"
    )
    summary = (
        f"At the temperature fitted on the trusted split, training loss {train_loss:.3g} and held-out loss "
        f"{test_loss:.3g}; sharpness {top:.3g} ({ratio:.2g} times the sharpest of {len(clean)} clean references); "
        f"train/test accuracy {train_acc:.0%}/{test_acc:.0%}."
        + (
            ""
            if comparable
            else " The references have other parameter shapes, so sharpness is not compared"
            " (it depends on the parameterisation, Dinh et al. 2017)."
        )
        + (f" Concerns: {'; '.join(problems)}." if problems else "")
        + " A flat minimum is no evidence of honesty: a planted minimum can be flatter (chapter 7)."
    )
    recommendation = (
        "Check that training converged to an ordinary minimum: loss curves, the data that shaped it, and a clean "
        "retraining on trusted data for comparison."
        if problems
        else "Record these values as the model's baseline; a retraining that moves them far needs an explanation."
    )
    evidence = {
        "temperature": temperature,
        "train_loss": train_loss,
        "test_loss": test_loss,
        "sharpness": top,
        "clean_reference_sharpness": clean,
        "clean_reference_loss": clean_loss,
        "loss_ratio": loss_ratio,
        "sharpness_ratio": ratio,
        "sharpness_comparable": comparable,
        "train_accuracy": train_acc,
        "test_accuracy": test_acc,
        "generalisation_gap": gap,
        **provenance(rows, config, ("sharpness_rows", "n_references")),
    }
    return Finding("convergence_properties", severity, summary, evidence, recommendation)
