"""Loss surfaces to descend, the measured stability bound, where descent ends, and the loss between two models.

The curvature of real models (sharpness, Lanczos extremes, the full Hessian) lives in :mod:`gdsec.hessian`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from gdsec.hessian import hessian_eigenvalues
from gdsec.models import eval_mode
from gdsec.optim import check_descent_args, minimize, step
from gdsec.streams import random_stream
from gdsec.validation import (
    check_batch,
    check_choice,
    check_int,
    check_labels,
    check_model,
    check_number,
)

__all__ = [
    "SURFACES",
    "Surface",
    "critical_lr",
    "critical_point_kind",
    "descend_many",
    "evaluate_grid",
    "nearest_minimum",
    "quadratic",
    "segment_loss",
    "surface",
]

Loss = Callable[[torch.Tensor], torch.Tensor]


class Surface(NamedTuple):
    """A 2-D test surface: its function, plotting window, known minima and a default start.

    Taught in chapters 1 and 2.
    """

    name: str
    fn: Loss
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    minima: tuple[tuple[float, float], ...]
    start: tuple[float, float]


def quadratic(curvatures: Sequence[float] = (1.0, 10.0)) -> Loss:
    """f(w) = 1/2 * sum_i c_i w_i^2: a bowl whose Hessian is diag(c), so L = max(c).

    Like every surface here it is vectorised: ``w`` may be (d,) or (d, ...) for a grid of points.
    Taught in chapters 1 and 2.
    """
    values = [check_number("curvatures", c, low=0.0, low_open=True) for c in curvatures]
    if not values:
        raise ValueError("curvatures must hold at least one positive number, got an empty sequence")
    c = torch.tensor(values, dtype=torch.float64)

    def loss(w: torch.Tensor) -> torch.Tensor:
        if w.shape[0] != len(c):
            raise ValueError(
                f"w must have {len(c)} coordinates on its first axis, got shape {tuple(w.shape)}"
            )
        weights = c.to(w.dtype).reshape(-1, *([1] * (w.dim() - 1)))
        return 0.5 * (weights * w * w).sum(dim=0)

    return loss


def _rosenbrock(w: torch.Tensor) -> torch.Tensor:
    """A Rosenbrock valley scaled for teaching: (1 - x)^2 + 10 (y - x^2)^2, minimum at (1, 1)."""
    return (1 - w[0]) ** 2 + 10.0 * (w[1] - w[0] ** 2) ** 2


def _himmelblau(w: torch.Tensor) -> torch.Tensor:
    """Himmelblau's function, scaled by 1/10: four minima of equal depth and a hill between them."""
    return ((w[0] ** 2 + w[1] - 11) ** 2 + (w[0] + w[1] ** 2 - 7) ** 2) / 10.0


def _saddle(w: torch.Tensor) -> torch.Tensor:
    """x^4/4 - x^2/2 + y^2/2: two wells at (+-1, 0) joined through a saddle point at the origin."""
    return w[0] ** 4 / 4 - w[0] ** 2 / 2 + w[1] ** 2 / 2


SURFACES: dict[str, Surface] = {
    "bowl": Surface(
        "bowl", quadratic((1.0, 10.0)), (-2.0, 2.0), (-2.0, 2.0), ((0.0, 0.0),), (-1.8, 1.2)
    ),
    "rosenbrock": Surface(
        "rosenbrock", _rosenbrock, (-2.0, 2.0), (-1.0, 3.0), ((1.0, 1.0),), (-1.5, 2.5)
    ),
    "himmelblau": Surface(
        "himmelblau",
        _himmelblau,
        (-5.0, 5.0),
        (-5.0, 5.0),
        ((3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126)),
        (0.0, 0.0),
    ),
    "saddle": Surface(
        "saddle", _saddle, (-1.6, 1.6), (-1.2, 1.2), ((-1.0, 0.0), (1.0, 0.0)), (0.0, 1.0)
    ),
}


def surface(name: str) -> Surface:
    """The test surface called ``name`` (one of ``SURFACES``).

    Taught in chapters 1, 2 and 7.
    """
    check_choice("name", name, tuple(SURFACES))
    return SURFACES[name]


def evaluate_grid(
    fn: Loss, xlim: tuple[float, float], ylim: tuple[float, float], n: int = 120
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate a 2-D loss on an n x n grid for contour plots: returns (X, Y, Z).

    Used in chapters 1, 2 and 7.
    """
    check_int("n", n, low=2, high=2000)
    for name, (low, high) in (("xlim", xlim), ("ylim", ylim)):
        if not low < high:
            raise ValueError(f"{name} must be (low, high) with low < high, got {(low, high)}")
    xs = torch.linspace(xlim[0], xlim[1], n, dtype=torch.float64)
    ys = torch.linspace(ylim[0], ylim[1], n, dtype=torch.float64)
    grid_x, grid_y = torch.meshgrid(xs, ys, indexing="xy")
    with torch.no_grad():
        z = fn(torch.stack([grid_x, grid_y]))
    return grid_x.numpy(), grid_y.numpy(), z.numpy()


def critical_lr(
    fn: Loss,
    start: Sequence[float],
    *,
    low: float = 1e-4,
    high: float = 10.0,
    steps: int = 200,
    tol: float = 1e-4,
) -> float:
    """Measure, by bisection, the largest learning rate at which plain gradient descent is stable.

    A run is stable when, after ``steps`` steps, it has not blown up and its loss is below the
    starting loss. On a quadratic with largest curvature L the answer approaches 2 / L.
    Taught in chapter 1.
    """
    check_number("low", low, low=0.0, low_open=True)
    check_number("high", high, low=low, low_open=True)
    check_int("steps", steps, low=1)
    check_number("tol", tol, low=0.0, low_open=True)
    start_t = torch.as_tensor(start, dtype=torch.float64)
    first = fn(start_t).item()

    def converges(lr: float) -> bool:
        path = minimize(fn, start_t, lr=lr, steps=steps)
        return len(path) == steps + 1 and fn(path[-1]).item() < first

    if not converges(low):
        raise ValueError(f"low={low} must be a learning rate at which descent is stable")
    if converges(high):
        return high
    while high - low > tol * low:
        mid = (low + high) / 2
        low, high = (mid, high) if converges(mid) else (low, mid)
    return low


def descend_many(
    fn: Loss,
    starts: torch.Tensor | Sequence[Sequence[float]],
    *,
    optimizer: str = "sgd",
    lr: float,
    steps: int,
    grad_noise: float = 0.0,
    seed: int = 0,
    blowup: float = 1e6,
    **hyper: float,
) -> torch.Tensor:
    """Run one optimizer from many 2-D starts at once (vectorised ``minimize``); return end points (n, 2).

    Runs that leave the ball of radius ``blowup`` or become non-finite end as NaN (diverged).
    Taught in chapter 7.
    """
    check_descent_args(optimizer, lr, steps, grad_noise, blowup, hyper)
    points = torch.as_tensor(starts, dtype=torch.float64).detach().clone()
    if points.dim() != 2 or points.shape[1] != 2 or points.shape[0] == 0:
        raise ValueError(f"starts must have shape (n, 2) with n >= 1, got {tuple(points.shape)}")
    if not torch.isfinite(points).all():
        raise ValueError("starts must be finite")
    generator = random_stream(seed, "landscape.descend_many.noise")
    current = points.T.contiguous()  # (2, n): the surfaces are vectorised over trailing axes
    alive = torch.ones(current.shape[1], dtype=torch.bool)
    state: dict = {}
    for _ in range(steps):
        probe = current.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(probe).sum(), probe)
        if grad_noise:
            grad = grad + grad_noise * torch.randn(
                grad.shape, generator=generator, dtype=grad.dtype
            )
        grad = torch.where(alive, grad, torch.zeros_like(grad))
        current, state = step(optimizer, current, grad, state, lr=lr, **hyper)
        alive &= torch.isfinite(current).all(dim=0) & (current.norm(dim=0) <= blowup)
        current = torch.where(alive, current, torch.zeros_like(current))
    ends = current.T.clone()
    ends[~alive] = float("nan")
    return ends


def nearest_minimum(surf: Surface, points: torch.Tensor, *, tol: float = 0.05) -> torch.Tensor:
    """Index into ``surf.minima`` of the minimum each point (n, 2) sits on; -1 if none within ``tol``.

    Taught in chapter 7.
    """
    check_number("tol", tol, low=0.0, low_open=True)
    points = torch.as_tensor(points, dtype=torch.float64)
    if points.dim() != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (n, 2), got {tuple(points.shape)}")
    minima = torch.tensor(surf.minima, dtype=torch.float64)
    distance = torch.cdist(torch.nan_to_num(points, nan=1e12), minima)
    closest = distance.min(dim=1)
    return torch.where(closest.values <= tol, closest.indices, torch.full_like(closest.indices, -1))


def critical_point_kind(
    fn: Loss, point: Sequence[float] | torch.Tensor, *, tol: float = 1e-6
) -> str:
    """Classify a point of a 2-D loss by its Hessian: "minimum", "saddle", "maximum" or "degenerate".

    This is what tells a saddle from a valley floor when the gradient alone (zero at both) cannot.
    Taught in chapter 7.
    """
    check_number("tol", tol, low=0.0)
    eigenvalues = hessian_eigenvalues(fn, point)
    if (eigenvalues > tol).all():
        return "minimum"
    if (eigenvalues < -tol).all():
        return "maximum"
    if (eigenvalues > tol).any() and (eigenvalues < -tol).any():
        return "saddle"
    return "degenerate"


def segment_loss(
    start: nn.Module,
    end: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    ts: Sequence[float] | torch.Tensor,
) -> torch.Tensor:
    """Mean cross-entropy on (x, y) at the weights ``(1 - t) * start + t * end`` for each ``t`` in ``ts``.

    ``t = 0`` is ``start``, ``t = 1`` is ``end``; values outside [0, 1] extend the line. Both models
    need the same parameter names and shapes; neither is modified (mode and ``.grad`` included).
    Taught in chapter 7.
    """
    for name, model in (("start", start), ("end", end)):
        check_model(name, model)
    check_batch("x", x)
    check_labels("y", y, n=x.shape[0])
    first, second = dict(start.named_parameters()), dict(end.named_parameters())
    if {n: p.shape for n, p in first.items()} != {n: p.shape for n, p in second.items()}:
        raise ValueError("end must have the same parameter names and shapes as start")
    coefficients = torch.as_tensor(ts, dtype=torch.float64).detach()
    if (
        coefficients.dim() != 1
        or coefficients.numel() == 0
        or not torch.isfinite(coefficients).all()
    ):
        raise ValueError(
            f"ts must be a non-empty 1-D sequence of finite numbers, got shape {tuple(coefficients.shape)}"
        )
    buffers = dict(start.named_buffers())
    losses = []
    with eval_mode(start), torch.no_grad():
        for t in coefficients.tolist():
            values = {n: (1 - t) * p.detach() + t * second[n].detach() for n, p in first.items()}
            logits = torch.func.functional_call(start, {**buffers, **values}, (x,))
            losses.append(nn.functional.cross_entropy(logits, y).item())
    return torch.tensor(losses, dtype=torch.float64)
