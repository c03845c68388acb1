"""Curvature of a loss at a point.

Lanczos extremes of the Hessian (sharpness), the exact Hessian of tiny models and of 2-D surfaces.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import nn

from gdsec.models import eval_mode
from gdsec.streams import random_stream
from gdsec.validation import (
    check_batch,
    check_int,
    check_labels,
    check_model,
    check_number,
)

__all__ = [
    "HessianExtremes",
    "curvature",
    "full_hessian",
    "hessian_eigenvalues",
    "hessian_extremes",
    "sharpness",
]


class HessianExtremes(NamedTuple):
    """The algebraic extremes of a Hessian's spectrum, whether both converged, and the Lanczos steps taken.

    Taught in chapter 7.
    """

    lambda_max: float
    lambda_min: float
    converged: bool
    steps: int


def _products(
    loss: torch.Tensor, params: list[torch.Tensor], retain: bool
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``v -> H v`` for the Hessian of ``loss`` w.r.t. ``params`` (flat float64 vectors)."""
    # a parameter the loss does not use (or uses linearly, or through no gradient path at all, as
    # under torch.no_grad) has a zero row and column in the Hessian
    first = (
        torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        if loss.requires_grad
        else [None] * len(params)
    )
    used = [i for i, g in enumerate(first) if g is not None and g.requires_grad]
    grads, sizes = [first[i] for i in used], [p.numel() for p in params]

    def hvp(vector: torch.Tensor) -> torch.Tensor:
        if not grads:
            return torch.zeros_like(vector)
        chunks = [
            c.reshape(p.shape).to(p.dtype)
            for c, p in zip(torch.split(vector, sizes), params, strict=True)
        ]
        products = torch.autograd.grad(
            grads,
            params,
            grad_outputs=[chunks[i] for i in used],
            retain_graph=retain,
            allow_unused=True,
        )
        return torch.cat(
            [
                torch.zeros(n, dtype=vector.dtype, device=vector.device)
                if h is None
                else h.reshape(-1).to(vector.dtype)
                for h, n in zip(products, sizes, strict=True)
            ]
        )

    return hvp


def hessian_extremes(
    loss_fn: Callable[[], torch.Tensor] | Sequence[Callable[[], torch.Tensor]],
    params: Sequence[torch.Tensor],
    *,
    steps: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
) -> HessianExtremes:
    """Largest and smallest algebraic Hessian eigenvalues by Lanczos on Hessian-vector products.

    Fully reorthogonalised Lanczos (as in PyHessian) from a seeded random vector. It stops once both
    extreme Ritz values have residual ``||Hv - lambda v|| <= tol * max(|lambda_max|, |lambda_min|)`` or
    the Krylov space is exhausted (``converged=True``), else after ``steps`` steps (``converged=False``).
    Each extreme is then accurate to about ``tol * max(|lambda_max|, |lambda_min|)`` or better.
    ``loss_fn`` may be a sequence of callables whose losses sum to the loss (row chunks): each is
    differentiated again at every step (a forward and a first gradient per chunk and step), so
    memory is one chunk's graph.
    Taught in chapter 7.
    """
    steps = check_int("steps", steps, low=1)
    check_number("tol", tol, low=0.0)
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("params must contain at least one tensor that requires grad")
    generator = random_stream(seed, "hessian.start")
    sizes = [p.numel() for p in params]
    if callable(loss_fn):
        hvp = _products(loss_fn(), params, retain=True)
    else:
        parts = list(loss_fn)

        def hvp(vector: torch.Tensor) -> torch.Tensor:
            return sum(_products(part(), params, retain=False)(vector) for part in parts)

    vector = torch.randn(
        sum(sizes), generator=generator, dtype=torch.float64, device=generator.device
    ).to(params[0].device)
    basis, alphas, betas = [vector / vector.norm()], [], []
    for k in range(1, min(steps, sum(sizes)) + 1):
        w = hvp(basis[-1])
        alphas.append(float(w @ basis[-1]))
        done = torch.stack(basis)
        for _ in range(2):  # full reorthogonalisation, twice for floating-point safety
            w = w - done.T @ (done @ w)
        beta = float(w.norm())
        # a k x k matrix of Python floats, solved on the CPU wherever the model is (MPS has no float64)
        tridiagonal = torch.diag(torch.tensor(alphas, dtype=torch.float64, device="cpu"))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64, device="cpu")
            tridiagonal += torch.diag(off, 1) + torch.diag(off, -1)
        ritz, vectors = torch.linalg.eigh(tridiagonal)
        scale = max(abs(float(ritz[0])), abs(float(ritz[-1])), 1e-30)
        residual = beta * vectors[-1, [0, -1]].abs().max().item()
        if residual <= tol * scale or beta <= 1e-12 * scale or k == sum(sizes):
            return HessianExtremes(float(ritz[-1]), float(ritz[0]), True, k)
        betas.append(beta)
        basis.append(w / beta)
    return HessianExtremes(float(ritz[-1]), float(ritz[0]), False, k)


def curvature(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
    batch_size: int | None = None,
) -> HessianExtremes:
    """lambda_max, lambda_min and convergence of the Hessian of the mean cross-entropy of ``model`` on (x, y).

    Computed in eval mode; the model's mode and its parameters' ``.grad`` are left as they were.
    ``batch_size`` rows at a time (default all at once) bound the memory by the batch.
    Taught in chapter 7.
    """
    check_model("model", model)
    check_batch("x", x)
    check_labels("y", y, n=x.shape[0])
    n = x.shape[0]
    size = n if batch_size is None else check_int("batch_size", batch_size, low=1)

    def part(rows: slice) -> Callable[[], torch.Tensor]:
        return lambda: nn.functional.cross_entropy(model(x[rows]), y[rows], reduction="sum") / n

    with eval_mode(model):
        params = [p for p in model.parameters() if p.requires_grad]
        saved = [None if p.grad is None else p.grad.clone() for p in params]
        whole = lambda: nn.functional.cross_entropy(model(x), y)  # noqa: E731
        result = hessian_extremes(
            whole if size >= n else [part(slice(i, i + size)) for i in range(0, n, size)],
            params,
            steps=steps,
            tol=tol,
            seed=seed,
        )
        for p, g in zip(params, saved, strict=True):
            p.grad = g
        return result


def sharpness(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
    batch_size: int | None = None,
) -> float:
    """Sharpness: the largest algebraic Hessian eigenvalue lambda_max of the mean cross-entropy on (x, y).

    ``curvature(...).lambda_max`` (Hessian-vector products over ``batch_size`` rows at a time);
    use :func:`curvature` to also see lambda_min and whether the
    estimate converged.
    Taught in chapters 1 and 7.
    """
    return curvature(model, x, y, steps=steps, tol=tol, seed=seed, batch_size=batch_size).lambda_max


def full_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The exact (P, P) Hessian of the mean cross-entropy over all P parameters: for tiny models only.

    Taught in chapter 7.
    """
    check_model("model", model)
    check_batch("x", x)
    check_labels("y", y, n=x.shape[0])
    params = [p for p in model.parameters() if p.requires_grad]
    total = sum(p.numel() for p in params)
    if total > 5000:
        raise ValueError(f"model must have at most 5000 parameters for a full Hessian, got {total}")
    with eval_mode(model):
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        shapes = [p.shape for p in params]
        flat = torch.cat([p.detach().reshape(-1) for p in params])

        def loss_of(vector: torch.Tensor) -> torch.Tensor:
            chunks = torch.split(vector, [math.prod(s) for s in shapes])
            values = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes, strict=True)}
            logits = torch.func.functional_call(model, values, (x,))
            return nn.functional.cross_entropy(logits, y)

        return torch.autograd.functional.hessian(loss_of, flat).detach()


def hessian_eigenvalues(
    fn: Callable[[torch.Tensor], torch.Tensor], point: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """Eigenvalues (ascending) of the exact Hessian of a low-dimensional loss ``fn`` at ``point``.

    Taught in chapter 7.
    """
    where = torch.as_tensor(point, dtype=torch.float64).detach().reshape(-1)
    if where.numel() == 0 or not torch.isfinite(where).all():
        raise ValueError("point must be a non-empty, finite vector")
    return torch.linalg.eigvalsh(torch.autograd.functional.hessian(fn, where))
