"""Loss surfaces to descend, the measured stability bound, and curvature (sharpness) of real models."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from gdsec.optim import minimize
from gdsec.validation import check_choice, check_int, check_model, check_number

__all__ = [
    "SURFACES",
    "Surface",
    "critical_lr",
    "evaluate_grid",
    "hessian_top_eigenvalue",
    "quadratic",
    "sharpness",
    "surface",
]

Loss = Callable[[torch.Tensor], torch.Tensor]


class Surface(NamedTuple):
    """A 2-D test surface: its function, plotting window, known minima and a default start."""

    name: str
    fn: Loss
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    minima: tuple[tuple[float, float], ...]
    start: tuple[float, float]


def quadratic(curvatures: Sequence[float] = (1.0, 10.0)) -> Loss:
    """f(w) = 1/2 * sum_i c_i w_i^2: a bowl whose Hessian is diag(c), so L = max(c).

    Like every surface here it is vectorised: ``w`` may be (d,) or (d, ...) for a grid of points.
    """
    values = [check_number("curvatures", c, low=0.0, low_open=True) for c in curvatures]
    if not values:
        raise ValueError("curvatures must hold at least one positive number, got an empty sequence")
    c = torch.tensor(values, dtype=torch.float64)

    def loss(w: torch.Tensor) -> torch.Tensor:
        if w.shape[0] != len(c):
            raise ValueError(f"w must have {len(c)} coordinates on its first axis, got shape {tuple(w.shape)}")
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
    "bowl": Surface("bowl", quadratic((1.0, 10.0)), (-2.0, 2.0), (-2.0, 2.0), ((0.0, 0.0),), (-1.8, 1.2)),
    "rosenbrock": Surface("rosenbrock", _rosenbrock, (-2.0, 2.0), (-1.0, 3.0), ((1.0, 1.0),), (-1.5, 2.5)),
    "himmelblau": Surface(
        "himmelblau",
        _himmelblau,
        (-5.0, 5.0),
        (-5.0, 5.0),
        ((3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126)),
        (0.0, 0.0),
    ),
    "saddle": Surface("saddle", _saddle, (-1.6, 1.6), (-1.2, 1.2), ((-1.0, 0.0), (1.0, 0.0)), (0.0, 1.0)),
}


def surface(name: str) -> Surface:
    """The test surface called ``name`` (one of ``SURFACES``)."""
    check_choice("name", name, tuple(SURFACES))
    return SURFACES[name]


def evaluate_grid(
    fn: Loss, xlim: tuple[float, float], ylim: tuple[float, float], n: int = 120
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate a 2-D loss on an n x n grid for contour plots: returns (X, Y, Z)."""
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


def hessian_top_eigenvalue(
    loss_fn: Callable[[], torch.Tensor],
    params: Sequence[torch.Tensor],
    *,
    iters: int = 50,
    tol: float = 1e-4,
    seed: int = 0,
) -> float:
    """Largest-magnitude eigenvalue of the loss Hessian by power iteration on Hessian-vector products."""
    check_int("iters", iters, low=1)
    check_number("tol", tol, low=0.0)
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("params must contain at least one tensor that requires grad")
    generator = torch.Generator().manual_seed(check_int("seed", seed, low=0))
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    vector = [torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in params]
    norm = torch.sqrt(sum((v * v).sum() for v in vector))
    vector = [v / norm for v in vector]
    eigenvalue = 0.0
    for _ in range(iters):
        product = torch.autograd.grad(grads, params, grad_outputs=vector, retain_graph=True)
        new_eigenvalue = float(sum((h * v).sum() for h, v in zip(product, vector, strict=True)))
        norm = torch.sqrt(sum((h * h).sum() for h in product))
        if norm == 0:
            return 0.0
        vector = [h / norm for h in product]
        if abs(new_eigenvalue - eigenvalue) <= tol * max(abs(new_eigenvalue), 1e-12):
            return new_eigenvalue
        eigenvalue = new_eigenvalue
    return eigenvalue


def sharpness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, iters: int = 50, seed: int = 0) -> float:
    """Top Hessian eigenvalue of the mean cross-entropy of ``model`` on (x, y): how sharp the minimum is."""
    check_model("model", model)
    was_training = model.training
    model.eval()
    try:
        params = [p for p in model.parameters() if p.requires_grad]
        saved = [None if p.grad is None else p.grad.clone() for p in params]
        value = hessian_top_eigenvalue(
            lambda: nn.functional.cross_entropy(model(x), y), params, iters=iters, seed=seed
        )
        for p, g in zip(params, saved, strict=True):
            p.grad = g
        return value
    finally:
        model.train(was_training)
