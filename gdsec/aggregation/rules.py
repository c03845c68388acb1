"""Aggregation rules for data-parallel gradients: the mean and three Byzantine-robust replacements.

Every rule takes ``grads`` of shape (n_workers, d) and returns one (d,) vector; none modifies its input.
"""

from __future__ import annotations

import time

import torch

from gdsec.validation import check_batch, check_choice, check_int, check_number, check_seed

__all__ = [
    "AGGREGATORS",
    "aggregate",
    "check_f",
    "check_grads",
    "clip_updates",
    "coordinate_median",
    "krum",
    "max_tolerated",
    "mean",
    "time_aggregator",
    "trimmed_mean",
]

AGGREGATORS = ("mean", "coordinate_median", "trimmed_mean", "krum")


def check_grads(grads: object, *, min_workers: int = 1) -> torch.Tensor:
    """Return ``grads`` if it is a finite floating tensor of shape (n_workers, d); else ``ValueError``.

    Used in chapter 4.
    """
    check_batch("grads", grads, min_rows=min_workers)
    if grads.dim() != 2 or grads.shape[1] == 0:
        raise ValueError(f"grads must have shape (n_workers, d) with d >= 1, got {tuple(grads.shape)}")
    return grads


def mean(grads: torch.Tensor) -> torch.Tensor:
    """Plain averaging: what data-parallel SGD (and DDP's all-reduce) does.

    Taught in chapter 4.
    """
    return check_grads(grads).mean(dim=0)


def coordinate_median(grads: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median (Yin et al. 2018); with an even count, the mean of the two middle values.

    Taught in chapter 4.
    """
    n = check_grads(grads).shape[0]
    ordered = grads.sort(dim=0).values
    return ordered[(n - 1) // 2 : n // 2 + 1].mean(dim=0)


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
        raise ValueError(f"f must be {allowed} for {aggregator} ({need}, n_workers = {n_workers}), got {f!r}")
    return f


def trimmed_mean(grads: torch.Tensor, *, f: int) -> torch.Tensor:
    """Coordinate-wise trimmed mean: drop the ``f`` largest and ``f`` smallest values, average the rest.

    Taught in chapter 4.
    """
    n = check_grads(grads).shape[0]
    f = check_f(f, n, "trimmed_mean")
    ordered = grads.sort(dim=0).values
    return ordered[f : n - f].mean(dim=0)


def krum(grads: torch.Tensor, *, f: int) -> torch.Tensor:
    """Krum (Blanchard et al. 2017): the input closest (summed squared distance) to its n - f - 2 neighbours.

    Taught in chapter 4.
    """
    n = check_grads(grads).shape[0]
    f = check_f(f, n, "krum")
    distances = torch.cdist(grads.double(), grads.double()).pow(2)
    nearest = distances.sort(dim=1).values[:, 1 : n - f - 1]
    return grads[nearest.sum(dim=1).argmin()].clone()


def aggregate(name: str, grads: torch.Tensor, *, f: int = 0) -> torch.Tensor:
    """Apply the aggregator called ``name`` (one of ``AGGREGATORS``); ``f`` is ignored by mean and median.

    Taught in chapter 4.
    """
    check_choice("aggregator", name, AGGREGATORS)
    if name == "mean":
        return mean(grads)
    if name == "coordinate_median":
        return coordinate_median(grads)
    if name == "trimmed_mean":
        return trimmed_mean(grads, f=f)
    return krum(grads, f=f)


def time_aggregator(name: str, *, n_workers: int, d: int, f: int = 0, repeats: int = 20, seed: int = 0) -> float:
    """Median wall seconds of one call of aggregator ``name`` on random (n_workers, d) gradients.

    Taught in chapter 4.
    """
    check_int("d", d, low=1)
    check_int("repeats", repeats, low=1)
    grads = torch.randn(check_int("n_workers", n_workers, low=1), d, generator=check_seed(seed))
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
    check_grads(grads)
    check_number("max_norm", max_norm, low=0.0, low_open=True)
    norms = grads.norm(dim=1, keepdim=True)
    return grads * (max_norm / norms.clamp_min(1e-12)).clamp(max=1.0)
