"""Minimal-perturbation attacks: the smallest L2 change that flips the label.

* :func:`cw_l2` — the Carlini-Wagner L2 objective, minimised with Adam, binary search on ``c``.
* :func:`deepfool` — repeated linearisation towards the nearest decision boundary
  (Moosavi-Dezfooli et al. 2016).

They have no budget: the size of what they return measures the distance to the boundary. The
contract (checked inputs, eval mode, output clipped to [0, 1]) is applied by ``attack_contract``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gdsec.attacks._core import (
    TINY,
    attack_contract,
    checked_logits,
    margin,
    per_row,
    row_norm,
)
from gdsec.attacks.settings import non_negative, positive, positive_int


@attack_contract(
    bounded=False,
    c=positive,
    kappa=non_negative,
    steps=positive_int,
    lr=positive,
    search_steps=positive_int,
)
def cw_l2(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    c: float = 1.0,
    kappa: float = 0.0,
    steps: int = 100,
    lr: float = 0.01,
    search_steps: int = 5,
) -> torch.Tensor:
    """Carlini-Wagner L2: minimise ``||delta||_2^2 + c * max(z_y - max_{k!=y} z_k, -kappa)`` with Adam.

    ``c`` is the starting constant; ``search_steps`` rounds of binary search adjust it per row
    (bisect after a success, multiply by 10 until the first one), each round warm-started from the
    smallest success so far. The optimisation runs on the pixels with clipping to [0, 1] after each
    step instead of C&W's tanh change of variables, which stalls on pixels that sit exactly at 0
    or 1 (most of a digit). Rows whose objective stops falling leave the batch early (C&W's early
    abort). Per row the smallest successful perturbation seen is returned; rows never fooled, and
    rows the model already misclassifies, come back unchanged.
    Taught in chapter 5.
    """
    n = x.shape[0]
    const = torch.full((n,), c, dtype=x.dtype, device=x.device)
    lower = torch.zeros(n, dtype=x.dtype, device=x.device)
    upper = torch.full((n,), math.inf, dtype=x.dtype, device=x.device)
    best = x.clone()
    best_size = torch.full((n,), math.inf, dtype=x.dtype, device=x.device)
    with torch.no_grad():
        best_size[checked_logits(model, x).argmax(1) != y] = 0.0
    for _ in range(search_steps):
        success = _cw_round(model, x, y, const, kappa, steps, lr, best, best_size)
        upper = torch.where(success, torch.minimum(upper, const), upper)
        lower = torch.where(success, lower, torch.maximum(lower, const))
        const = torch.where(torch.isinf(upper), const * 10, (lower + upper) / 2)
    return best


def _cw_round(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    const: torch.Tensor,
    kappa: float,
    steps: int,
    lr: float,
    best: torch.Tensor,
    best_size: torch.Tensor,
) -> torch.Tensor:
    """One Adam run of the C&W objective at per-row constants; update ``best`` in place; return successes.

    Adam is written out so that rows whose objective stops falling (checked every ``steps // 10``
    steps, as C&W's early abort) leave the batch and cost nothing afterwards.
    """
    beta1, beta2, tiny = 0.9, 0.999, 1e-8
    delta = (best - x).clone()  # warm start from the smallest success so far (zero before any)
    m1, m2 = torch.zeros_like(x), torch.zeros_like(x)
    success = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    previous = torch.full((x.shape[0],), math.inf, dtype=x.dtype, device=x.device)
    active = torch.arange(x.shape[0], device=x.device)
    check_every = max(1, steps // 10)
    for step in range(1, steps + 1):
        if active.numel() == 0:
            break
        xa, ya = x[active], y[active]
        with torch.enable_grad():
            d = delta[active].requires_grad_(True)
            x_adv = (xa + d).clamp(0.0, 1.0)
            logits = checked_logits(model, x_adv)
            m = margin(logits, ya)
            size = row_norm(x_adv - xa, "2")
            objective = size.pow(2) + const[active] * torch.clamp(m + kappa, min=0.0)
            (grad,) = torch.autograd.grad(objective.sum(), d)
        with torch.no_grad():
            _record_success(active, logits, m, size, x_adv, y, kappa, success, best, best_size)
            m1[active] = beta1 * m1[active] + (1 - beta1) * grad
            m2[active] = beta2 * m2[active] + (1 - beta2) * grad.pow(2)
            m_hat = m1[active] / (1 - beta1**step)
            v_hat = m2[active] / (1 - beta2**step)
            moved = d - lr * m_hat / (v_hat.sqrt() + tiny)
            delta[active] = (xa + moved).clamp(0.0, 1.0) - xa
            if step % check_every == 0:
                value = objective.detach()
                going = value < 0.9999 * previous[active]
                previous[active] = value
                active = active[going]
    with torch.no_grad():
        x_adv = (x + delta).clamp(0.0, 1.0)
        logits = checked_logits(model, x_adv)
        everyone = torch.arange(x.shape[0], device=x.device)
        _record_success(
            everyone,
            logits,
            margin(logits, y),
            row_norm(x_adv - x, "2"),
            x_adv,
            y,
            kappa,
            success,
            best,
            best_size,
        )
    return success


def _record_success(
    rows: torch.Tensor,
    logits: torch.Tensor,
    m: torch.Tensor,
    size: torch.Tensor,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    kappa: float,
    success: torch.Tensor,
    best: torch.Tensor,
    best_size: torch.Tensor,
) -> None:
    """In place: mark ``rows`` that fool the model with margin ``kappa`` and keep the smallest ones."""
    fooled = (logits.argmax(1) != y[rows]) & (m <= -kappa)
    success[rows[fooled]] = True
    better = fooled & (size < best_size[rows])
    best[rows[better]] = x_adv[better].detach()
    best_size[rows[better]] = size[better].detach()


@attack_contract(bounded=False, overshoot=non_negative, steps=positive_int)
def deepfool(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    overshoot: float = 0.02,
    steps: int = 50,
) -> torch.Tensor:
    """DeepFool: step to the nearest linearised decision boundary until the label changes.

    The label attacked is ``y`` when given, else the model's own prediction (the two agree on every
    correctly classified row); rows already predicted differently from ``y`` come back unchanged.
    At each iteration and for each row still predicted as its label ``k0``, the class ``k``
    minimising ``|z_k - z_k0| / ||grad(z_k - z_k0)||`` is chosen and the row moves onto that
    linearised boundary; the total perturbation is scaled by ``1 + overshoot``. Rows that do not
    change label within ``steps`` iterations keep their last iterate.
    Taught in chapter 5.
    """
    with torch.no_grad():
        predicted = checked_logits(model, x).argmax(1)
    label = predicted if y is None else y
    r_total = torch.zeros_like(x)
    x_adv = x.clone()
    active = predicted == label
    for _ in range(steps):
        index = active.nonzero().squeeze(1)
        if index.numel() == 0:
            break
        r_total[index] += _deepfool_step(model, x_adv[index], label[index])
        x_adv[index] = (x[index] + (1 + overshoot) * r_total[index]).clamp(0.0, 1.0)
        with torch.no_grad():
            active[index] = checked_logits(model, x_adv[index]).argmax(1) == label[index]
    return x_adv


def gradient_or_zero(out: torch.Tensor, probe: torch.Tensor, retain: bool) -> torch.Tensor:
    """d out / d probe, or zero without a gradient path (no_grad, detach): DeepFool and FAB."""
    grad = None
    if out.requires_grad:
        (grad,) = torch.autograd.grad(out, probe, retain_graph=retain, allow_unused=True)
    return torch.zeros_like(probe) if grad is None else grad


def _deepfool_step(model: nn.Module, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """The minimal step that reaches the nearest linearised boundary, for each row of ``x``."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = checked_logits(model, x)
        n_classes = logits.shape[1]
        grads = torch.stack(
            [gradient_or_zero(logits[:, k].sum(), x, k < n_classes - 1) for k in range(n_classes)],
            dim=1,
        )  # (N, K, ...)
    rows = torch.arange(x.shape[0], device=x.device)
    diff_logit = (logits - logits[rows, label][:, None]).detach()  # (N, K)
    diff_grad = grads - grads[rows, label][:, None]  # (N, K, ...)
    grad_norm = diff_grad.reshape(x.shape[0], n_classes, -1).norm(dim=2)
    distance = diff_logit.abs() / (grad_norm + TINY)
    distance[rows, label] = math.inf
    nearest = distance.argmin(1)
    w = diff_grad[rows, nearest]
    scale = (diff_logit[rows, nearest].abs() + 1e-4) / (grad_norm[rows, nearest].pow(2) + TINY)
    return (per_row(scale, w) * w).detach()
