"""Gradient attacks inside an eps-ball: FGSM, PGD and Auto-PGD.

* :func:`fgsm` — one signed-gradient step of size ``eps`` (Goodfellow et al. 2015).
* :func:`pgd` — many projected steps, L-infinity or L2 ball, random start, restarts (Madry et al. 2018).
* :func:`apgd` — Auto-PGD (Croce & Hein 2020): momentum, a step size that halves itself when
  progress stalls, cross-entropy or DLR loss, untargeted or targeted.

The contract (checked inputs, eval mode, output in the ball) is applied by ``attack_contract``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gdsec.attacks._core import (
    Objective,
    attack_contract,
    checked_logits,
    cross_entropy,
    dlr_loss,
    input_gradient,
    keep_best,
    margin,
    project,
    runner_up_targets,
    steepest_direction,
)
from gdsec.attacks._core import (
    random_start as random_point,  # pgd's flag random_start shadows the name
)
from gdsec.attacks.settings import flag, optional_positive, positive_int, seed_value
from gdsec.streams import random_stream
from gdsec.validation import check_choice, check_norm

APGD_LOSSES = ("ce", "dlr")
_MOMENTUM = 0.75
_RHO = 0.75


@attack_contract(bounded=True)
def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Fast gradient sign method: ``x + eps * sign(grad_x loss)``, clipped to [0, 1]. Taught in chapter 5."""
    _, grad = input_gradient(model, x, y)
    return x + eps * grad.sign()


@attack_contract(
    bounded=True,
    alpha=optional_positive,
    steps=positive_int,
    norm=check_norm,
    random_start=flag,
    seed=seed_value,
    restarts=positive_int,
)
def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    alpha: float | None = None,
    steps: int = 40,
    norm: str = "inf",
    random_start: bool = True,
    seed: int = 0,
    restarts: int = 1,
) -> torch.Tensor:
    """Projected gradient descent on the loss (ascent), in the L-inf or L2 ``eps``-ball.

    Each step moves by ``alpha`` along the sign of the gradient (L-inf) or the normalised gradient
    (L2), then projects back onto the ball and the [0, 1] box. ``alpha=None`` uses
    ``max(2.5 * eps / steps, eps / 10)``. Per row, the iterate with the smallest margin seen over
    all steps and ``restarts`` is returned, so more steps or restarts never make the attack weaker.
    The random starts come from ``seed``: the same seed gives the same result.
    Taught in chapters 5 and 6.
    """
    alpha = max(2.5 * eps / steps, eps / 10) if alpha is None else alpha
    generator = random_stream(seed, "attacks.pgd")
    best = x.clone()
    with torch.no_grad():
        best_margin = margin(checked_logits(model, x), y)
    for _ in range(restarts):
        x_adv = random_point(x, eps, norm, generator) if random_start else x.clone()
        for _ in range(steps):
            logits, grad = input_gradient(model, x_adv, y)
            keep_best(best, best_margin, x_adv, margin(logits, y))
            x_adv = project(x, x_adv + alpha * steepest_direction(grad, norm), eps, norm)
        with torch.no_grad():
            keep_best(best, best_margin, x_adv, margin(checked_logits(model, x_adv), y))
    return best


def checkpoints(steps: int) -> list[int]:
    """Iterations at which APGD checks its step size: ``ceil(p_j * steps)`` for Croce & Hein's p_j.

    ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``; only checkpoints
    strictly inside ``(0, steps)`` are returned. Used in chapter 8.
    """
    previous, current, marks = 0.0, 0.22, []
    while current < 1.0:
        mark = max(1, math.ceil(round(current * steps, 6)))
        if mark < steps and (not marks or mark > marks[-1]):
            marks.append(mark)
        previous, current = current, current + max(current - previous - 0.03, 0.06)
    return marks


def _apgd_run(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm: str,
    objective: Objective,
    steps: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One APGD run from a random start, maximising ``objective``; return (iterate, margin) per row
    for the iterate with the smallest margin seen (the most adversarial point found)."""
    marks = set(checkpoints(steps))
    x_cur = random_point(x, eps, norm, generator)
    logits, grad = input_gradient(model, x_cur, y, objective)
    loss = objective(logits, y).detach()
    best, best_margin = x_cur.clone(), margin(logits, y)
    x_max, loss_max, grad_max = x_cur.clone(), loss.clone(), grad.clone()
    step = torch.full(
        (x.shape[0],) + (1,) * (x.dim() - 1), 2.0 * eps, dtype=x.dtype, device=x.device
    )
    x_prev = x_cur.clone()
    improved = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    loss_max_at_check = loss_max.clone()
    halved_at_check = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    last_mark = 0
    for i in range(1, steps + 1):
        z = project(x, x_cur + step * steepest_direction(grad, norm), eps, norm)
        momentum = _MOMENTUM if i > 1 else 1.0
        x_next = project(
            x, x_cur + momentum * (z - x_cur) + (1 - momentum) * (x_cur - x_prev), eps, norm
        )
        x_prev, x_cur = x_cur, x_next
        logits, grad = input_gradient(model, x_cur, y, objective)
        new_loss = objective(logits, y).detach()
        keep_best(best, best_margin, x_cur, margin(logits, y))
        improved += (new_loss > loss).to(x.dtype)
        loss = new_loss
        higher = loss > loss_max
        x_max[higher], loss_max[higher], grad_max[higher] = (
            x_cur[higher],
            loss[higher],
            grad[higher],
        )
        if i in marks:
            oscillating = improved < _RHO * (i - last_mark)
            stalled = ~halved_at_check & (loss_max <= loss_max_at_check)
            halve = oscillating | stalled
            step[halve] /= 2
            x_cur[halve], x_prev[halve], grad[halve] = x_max[halve], x_max[halve], grad_max[halve]
            halved_at_check, loss_max_at_check = halve, loss_max.clone()
            improved.zero_()
            last_mark = i
    return best, best_margin


@attack_contract(
    bounded=True,
    norm=check_norm,
    loss=lambda name, v: check_choice(name, v, APGD_LOSSES),
    targeted=flag,
    steps=positive_int,
    restarts=positive_int,
    seed=seed_value,
)
def apgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    norm: str = "inf",
    loss: str = "ce",
    targeted: bool = False,
    steps: int = 100,
    restarts: int = 1,
    seed: int = 0,
) -> torch.Tensor:
    """Auto-PGD (Croce & Hein 2020) in the L-inf or L2 ``eps``-ball.

    PGD with momentum 0.75 whose step size starts at ``2 * eps`` and halves at the checkpoints of
    :func:`checkpoints` whenever fewer than 75 % of the steps since the last checkpoint raised the
    loss, or when neither the step size nor the best loss changed since then; after a halving the
    run restarts from the best point found. ``loss`` is the cross-entropy ("ce") or the
    scale-invariant DLR loss ("dlr", see :func:`dlr_loss`, which falls back to the margin for two
    classes). ``targeted=True`` runs the targeted DLR loss against each of the top-9 other classes
    ranked by the clean logits (all other classes when there are fewer), one target at a time;
    ``loss`` is then ignored. Each restart and target attacks only the rows not yet fooled; per row
    the most adversarial point found (smallest margin) is returned.
    Used in chapter 8.
    """
    generator = random_stream(seed, "attacks.apgd")
    with torch.no_grad():
        clean = checked_logits(model, x)
    best, best_margin = x.clone(), margin(clean, y)
    if targeted:
        rounds = runner_up_targets(clean)
    else:
        rounds = [None]
    for target in rounds:
        for _ in range(restarts):
            rows = (best_margin > 0).nonzero().squeeze(1)
            if target is not None:
                rows = rows[target[rows] != y[rows]]
            if rows.numel() == 0:
                break
            objective = _objective(loss, None if target is None else target[rows])
            x_run, m_run = _apgd_run(
                model, x[rows], y[rows], eps, norm, objective, steps, generator
            )
            keep_best(best, best_margin, x_run, m_run, rows)
    return best


def _objective(loss: str, target: torch.Tensor | None) -> Objective:
    """The per-row loss APGD maximises: cross-entropy, DLR, or targeted DLR against ``target``."""
    if target is not None:
        return lambda logits, y: dlr_loss(logits, y, target)
    return cross_entropy if loss == "ce" else dlr_loss
