"""Sanity checks that read their evidence: each compares measurements that would agree on a model
with honest gradients, and fails (with a sentence saying what it saw) when they do not.

They follow Carlini et al. (2019) and AutoAttack's checks (Croce & Hein 2020). Passing them is
necessary for a robustness claim, never sufficient: a defence built to pass them can still be broken
by an attack adapted to it (Tramer et al. 2020).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from gdsec.attacks import (
    BUDGETS,
    Budget,
    MeanOfDraws,
    apgd,
    check_attack_inputs,
    fgsm,
    is_randomised,
    margin,
    pgd,
    square_attack,
    zero_gradient_rows,
)
from gdsec.masking.adaptive import transfer
from gdsec.models import eval_mode
from gdsec.streams import random_stream
from gdsec.validation import check_int, check_keywords, check_model, check_number

__all__ = ["SANITY_CHECKS", "MaskingReport", "random_noise", "sanity_checks"]

#: Every check of :func:`sanity_checks`, by name, with what it asks (a check fails when the answer is no).
SANITY_CHECKS = {
    "iterative_beats_single_step": "PGD is no better for the defender than one FGSM step (a symptom, not a law)",
    "converged": "PGD with 5x the steps and APGD do not beat the evaluated PGD by more than tol",
    "eps_monotone": "robust accuracy does not rise with eps over eps/2, eps, 2 eps",
    "beats_random_noise": "random points in the ball do not beat the gradient attack by more than tol",
    "no_zero_gradients": "no correctly classified row has an exactly zero input gradient",
    "deterministic": "two forward passes on the same input agree (else the evaluation used EOT)",
    "whitebox_beats_blackbox": "the gradient-free Square Attack does not beat PGD by more than tol",
    "whitebox_beats_transfer": "PGD transferred from the surrogate does not beat PGD by more than tol",
    "unbounded_reaches_zero": "PGD with eps = 1 leaves at most tol of the rows",
}


class MaskingReport(NamedTuple):
    """Outcome of :func:`sanity_checks`: ``masked`` if any check failed; which passed; the measurements;
    and, for each failed check, a sentence saying what it saw.

    Taught in chapter 8.
    """

    masked: bool
    checks: dict[str, bool]
    evidence: dict[str, float]
    reasons: dict[str, str]


def random_noise(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    points: int = 20,
    seed: int = 0,
) -> torch.Tensor:
    """Per row, the one of ``points`` uniform random points in the L-inf ``eps``-ball with the smallest margin.

    The baseline a gradient attack must beat. Taught in chapter 8.
    """
    check_attack_inputs(model, x, y)
    eps = check_number("eps", eps, low=0.0, high=1.0)
    points = check_int("points", points, low=1)
    generator = random_stream(seed, "masking.random_noise")
    x = x.detach()
    with torch.no_grad(), eval_mode(model):
        best, best_margin = x.clone(), margin(model(x), y)
        for _ in range(points):
            noise = torch.rand(x.shape, generator=generator, dtype=x.dtype) * 2 - 1
            candidate = (x + eps * noise).clamp(0.0, 1.0)
            value = margin(model(candidate), y)
            better = value < best_margin
            best[better], best_margin = candidate[better], torch.where(better, value, best_margin)
    return best


def _robust(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor
) -> torch.Tensor:
    """Per row: classified correctly clean and at ``x_adv``."""
    with torch.no_grad(), eval_mode(model):
        return (model(x).argmax(1) == y) & (model(x_adv).argmax(1) == y)


def _measure(
    target: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    surrogate: nn.Module | None,
    budget: Budget,
    seed: int,
) -> dict[str, torch.Tensor]:
    """Per-row robustness under every attack the checks compare."""
    steps = budget.steps
    adv = {
        "clean": x,
        "fgsm": fgsm(target, x, y, eps),
        "pgd": pgd(target, x, y, eps, steps=steps, seed=seed),
        "pgd_more_steps": pgd(target, x, y, eps, steps=5 * steps, seed=seed),
        "apgd": apgd(target, x, y, eps, steps=5 * steps, seed=seed),
        "pgd_half_eps": pgd(target, x, y, eps / 2, steps=steps, seed=seed),
        "pgd_double_eps": pgd(target, x, y, min(2 * eps, 1.0), steps=steps, seed=seed),
        "pgd_unbounded": pgd(target, x, y, 1.0, steps=steps, seed=seed),
        "noise": random_noise(target, x, y, eps, points=budget.noise_points, seed=seed),
        "square": square_attack(target, x, y, eps, steps=budget.square_steps, seed=seed),
    }
    if surrogate is not None:
        adv["transfer"] = transfer(surrogate, pgd, eps=eps, steps=steps, seed=seed)(target, x, y)
    return {name: _robust(target, x, y, x_adv) for name, x_adv in adv.items()}


def _verdicts(ev: dict[str, float], tol: float) -> dict[str, bool]:
    """Each check's pass/fail from the measured evidence."""
    checks = {
        "iterative_beats_single_step": ev["pgd"] <= ev["fgsm"] + tol,
        "converged": ev["pgd"] <= ev["stronger"] + tol,
        "eps_monotone": ev["pgd_half_eps"] >= ev["pgd"] - tol
        and ev["pgd"] >= ev["pgd_double_eps"] - tol,
        "beats_random_noise": ev["pgd"] <= ev["noise"] + tol,
        "no_zero_gradients": ev["zero_gradient_rows"] == 0,
        "deterministic": ev["randomised"] == 0,
        "whitebox_beats_blackbox": ev["pgd"] <= ev["square"] + tol,
        "unbounded_reaches_zero": ev["pgd_unbounded"] <= tol,
    }
    if "transfer" in ev:
        checks["whitebox_beats_transfer"] = ev["pgd"] <= ev["transfer"] + tol
    return checks


def _reason(name: str, ev: dict[str, float]) -> str:
    """One sentence: what the failed check ``name`` saw."""
    said = {
        "iterative_beats_single_step": f"PGD leaves {ev['pgd']:.1%}, more than FGSM's {ev['fgsm']:.1%}",
        "converged": (
            f"the evaluated PGD leaves {ev['pgd']:.1%} but 5x the steps or APGD leave "
            f"{ev['stronger']:.1%}: the short run had not converged"
        ),
        "eps_monotone": (
            f"PGD leaves {ev['pgd_half_eps']:.1%}, {ev['pgd']:.1%}, {ev['pgd_double_eps']:.1%} "
            "at eps/2, eps, 2 eps: accuracy rose with the budget"
        ),
        "beats_random_noise": (
            f"random noise in the ball leaves {ev['noise']:.1%}, below PGD's {ev['pgd']:.1%}: "
            "the gradient points nowhere useful"
        ),
        "no_zero_gradients": (
            f"{ev['zero_gradient_rows']:.0f} correctly classified rows have an exactly zero "
            "input gradient"
        ),
        "deterministic": "two forward passes differ: the attacks and the scoring used EOT",
        "whitebox_beats_blackbox": f"Square leaves {ev['square']:.1%}, below PGD's {ev['pgd']:.1%}",
        "whitebox_beats_transfer": (
            f"transfer from the surrogate leaves {ev.get('transfer', float('nan')):.1%}, "
            f"below PGD's {ev['pgd']:.1%}"
        ),
        "unbounded_reaches_zero": f"PGD with eps = 1 still leaves {ev['pgd_unbounded']:.1%}",
    }
    return said[name]


def sanity_checks(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    surrogate: nn.Module | None = None,
    budget: Budget = BUDGETS["standard"],
    tol: float = 0.05,
    seed: int = 0,
    **unknown: object,
) -> MaskingReport:
    """Run the robustness-evaluation sanity checks (:data:`SANITY_CHECKS`) on ``model`` at L-infinity budget ``eps``.

    The evaluation under test is PGD with ``budget.steps`` steps. The checks compare it with FGSM,
    PGD with 5x the steps and APGD (per row: robust to both), PGD at eps/2 and 2 eps, the best of
    ``budget.noise_points`` random points in the ball, Square (``budget.square_steps``), PGD at
    eps = 1 and, with ``surrogate``, transfer; they read the input gradients of the correctly
    classified rows and whether the model is randomised in eval mode, where the attacks run
    (:func:`gdsec.attacks.is_randomised`; then every attack and the scoring use EOT over
    ``budget.draws`` draws). ``masked`` is True when any check fails; ``evidence`` holds every
    accuracy, the zero-gradient count and fraction (of the correctly classified rows); ``reasons``
    says what each failed check saw.
    Taught in chapter 8.
    """
    check_keywords("sanity_checks", unknown, ())
    check_attack_inputs(model, x, y)
    eps = check_number("eps", eps, low=0.0, high=1.0, low_open=True)
    if not isinstance(budget, Budget):
        raise ValueError(f"budget must be a gdsec.attacks.Budget, got {type(budget).__name__}")
    seed = check_int("seed", seed, low=0)
    tol = check_number("tol", tol, low=0.0, high=1.0)
    if surrogate is not None:
        check_model("surrogate", surrogate)
    x, y = x.detach(), y.detach()
    with torch.no_grad(), eval_mode(model):
        randomised = is_randomised(model, x)
    target = MeanOfDraws(model, budget.draws) if randomised else model
    robust = _measure(target, x, y, eps, surrogate, budget, seed)
    evidence = {name: rows.float().mean().item() for name, rows in robust.items()}
    evidence["stronger"] = (robust["pgd_more_steps"] & robust["apgd"]).float().mean().item()
    correct = robust["clean"]
    with eval_mode(target):
        zero = (
            zero_gradient_rows(target, x[correct], y[correct]).float().mean().item()
            if correct.any()
            else 0.0
        )
    evidence |= {
        "zero_gradient_rows": float(round(zero * int(correct.sum()))),
        "zero_gradient_fraction": zero,
        "randomised": float(randomised),
    }
    checks = _verdicts(evidence, tol)
    reasons = {name: _reason(name, evidence) for name, passed in checks.items() if not passed}
    return MaskingReport(not all(checks.values()), checks, evidence, reasons)
