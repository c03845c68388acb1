"""Aggregation rules for data-parallel gradients: the mean and three Byzantine-robust replacements.

Every rule takes ``grads`` of shape (n_workers, d) and returns one (d,) vector; none modifies its input.
:func:`krum` and the private ``_*_rows`` versions take any leading batch dimensions, (..., n_workers, d)
-> (..., d), so that :mod:`~gdsec.aggregation.simulation` can run many settings and seeds at once with
the same code.
"""

from __future__ import annotations

import time

import torch

from gdsec.streams import random_stream
from gdsec.validation import check_batch, check_choice, check_int, check_number

__all__ = [
    "AGGREGATORS",
    "aggregate",
    "check_f",
    "check_worker_grads",
    "clip_updates",
    "coordinate_median",
    "krum",
    "max_tolerated",
    "mean",
    "time_aggregator",
]

AGGREGATORS = ("mean", "coordinate_median", "trimmed_mean", "krum")


def check_worker_grads(grads: object, *, min_workers: int = 1) -> torch.Tensor:
    """Return ``grads`` if it is a finite floating tensor of shape (n_workers, d) (one row per worker).

    Otherwise ``ValueError`` naming ``grads``.

    Used in chapter 4.
    """
    check_batch("grads", grads, min_rows=min_workers)
    if grads.dim() != 2 or grads.shape[1] == 0:
        raise ValueError(
            f"grads must have shape (n_workers, d) with d >= 1, got {tuple(grads.shape)}"
        )
    return grads


def mean(grads: torch.Tensor) -> torch.Tensor:
    """Plain averaging: what data-parallel SGD (and DDP's all-reduce) does.

    Taught in chapter 4.
    """
    return check_worker_grads(grads).mean(dim=0)


def coordinate_median(grads: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median (Yin et al. 2018); with an even count, the mean of the two middle values.

    Taught in chapter 4.
    """
    return _median_rows(check_worker_grads(grads))


def _sorted_rows(grads: torch.Tensor) -> torch.Tensor:
    """Each coordinate of (..., n, d) sorted over the n rows (dimension -2), ascending.

    For the few workers of a simulation an odd-even transposition network (n rounds of elementwise
    min/max) is several times faster than ``torch.sort`` along a short middle dimension; same values.
    """
    n = grads.shape[-2]
    if n > 16:
        return grads.sort(dim=-2).values
    rows = list(grads.unbind(dim=-2))
    for parity in range(n):
        for i in range(parity % 2, n - 1, 2):
            rows[i], rows[i + 1] = (
                torch.minimum(rows[i], rows[i + 1]),
                torch.maximum(rows[i], rows[i + 1]),
            )
    return torch.stack(rows, dim=-2)


def _median_rows(grads: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median over dimension -2 of (..., n, d)."""
    n = grads.shape[-2]
    ordered = _sorted_rows(grads)
    return ordered[..., (n - 1) // 2 : n // 2 + 1, :].mean(dim=-2)


def max_tolerated(aggregator: str, n_workers: int) -> int:
    """The largest number of Byzantine workers ``f`` the rule accepts for ``n_workers`` workers.

    Taught in chapter 4.
    """
    check_choice("aggregator", aggregator, AGGREGATORS)
    check_int("n_workers", n_workers, low=1)
    if aggregator == "mean":
        return 0
    if aggregator == "krum":
        return max(-1, (n_workers - 3) // 2)
    return (n_workers - 1) // 2


def check_f(f: object, n_workers: int, aggregator: str) -> int:
    """Return ``f`` if ``aggregator`` tolerates ``f`` Byzantine workers out of ``n_workers``; else ``ValueError``.

    Used in chapter 4.
    """
    limit = max_tolerated(aggregator, n_workers)
    need = "n_workers > 2f + 2" if aggregator == "krum" else "n_workers > 2f"
    if isinstance(f, bool) or not isinstance(f, int) or not 0 <= f <= limit:
        allowed = f"an integer in [0, {limit}]" if limit >= 0 else "impossible"
        raise ValueError(
            f"f must be {allowed} for {aggregator} ({need}, n_workers = {n_workers}), got {f!r}"
        )
    return f


def _trimmed_rows(grads: torch.Tensor, f: int) -> torch.Tensor:
    """Coordinate-wise trimmed mean over dimension -2 of (..., n, d)."""
    n = grads.shape[-2]
    return _sorted_rows(grads)[..., f : n - f, :].mean(dim=-2)


def krum(grads: torch.Tensor, *, f: int) -> torch.Tensor:
    """Krum (Blanchard et al. 2017): the row closest (summed squared distance) to its n - f - 2 neighbours.

    ``grads`` is (n_workers, d), or (..., n_workers, d) for a choice in every slice (the batched form
    ``simulate_batch`` uses). Finiteness is not checked: a diverging simulation still aggregates.
    Taught in chapter 4.
    """
    if not isinstance(grads, torch.Tensor) or grads.dim() < 2 or grads.shape[-2] == 0:
        raise ValueError("grads must be a tensor of shape (..., n_workers, d) with n_workers >= 1")
    n = grads.shape[-2]
    check_f(f, n, "krum")
    wide = grads.double()
    distances = torch.cdist(wide, wide).pow(2)
    nearest = distances.sort(dim=-1).values[..., 1 : n - f - 1]
    best = nearest.sum(dim=-1).argmin(dim=-1)
    return torch.take_along_dim(grads, best[..., None, None], dim=-2).squeeze(-2).clone()


def aggregate(name: str, grads: torch.Tensor, *, f: int = 0) -> torch.Tensor:
    """Apply the aggregator called ``name`` (one of ``AGGREGATORS``); ``f`` is ignored by mean and median.

    Taught in chapter 4.
    """
    check_choice("aggregator", name, AGGREGATORS)
    if name in ("trimmed_mean", "krum"):
        check_f(f, check_worker_grads(grads).shape[0], name)
    return _aggregate_rows(name, check_worker_grads(grads), f)


def _aggregate_rows(name: str, grads: torch.Tensor, f: int) -> torch.Tensor:
    """Rule ``name`` applied to each (n, d) slice of (..., n, d); arguments already checked."""
    if name == "mean":
        return grads.mean(dim=-2)
    if name == "coordinate_median":
        return _median_rows(grads)
    if name == "trimmed_mean":
        return _trimmed_rows(grads, f)
    return krum(grads, f=f)


def time_aggregator(
    name: str, *, n_workers: int, d: int, f: int = 0, repeats: int = 20, seed: int = 0
) -> float:
    """Median wall seconds of one call of aggregator ``name`` on random (n_workers, d) gradients.

    Taught in chapter 4.
    """
    check_int("d", d, low=1)
    check_int("repeats", repeats, low=1)
    grads = torch.randn(
        check_int("n_workers", n_workers, low=1),
        d,
        generator=random_stream(seed, "aggregation.honest_gradients"),
    )
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        aggregate(name, grads, f=f)
        seconds.append(time.perf_counter() - start)
    return sorted(seconds)[len(seconds) // 2]


def clip_updates(grads: torch.Tensor, *, max_norm: float) -> torch.Tensor:
    """Each row rescaled to L2 norm at most ``max_norm`` (an update-size limit); a new tensor.

    Taught in chapter 4.
    """
    check_worker_grads(grads)
    return _clip_rows(grads, check_number("max_norm", max_norm, low=0.0, low_open=True))


def _clip_rows(grads: torch.Tensor, max_norm: float | torch.Tensor) -> torch.Tensor:
    """Rows of (..., n, d) rescaled to norm at most ``max_norm`` (a number, or one per leading slice)."""
    if isinstance(max_norm, torch.Tensor):
        max_norm = max_norm.reshape(*max_norm.shape, *([1] * (grads.dim() - max_norm.dim())))
    norms = grads.norm(dim=-1, keepdim=True)
    return grads * (max_norm / norms.clamp_min(1e-12)).clamp(max=1.0)
