"""What several seeds measured, in numbers a chapter can glue: mean and spread, and binomial intervals."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import NamedTuple

import torch

from gdsec.validation import check_int, check_number

__all__ = ["Summary", "format_mean_spread", "summarise", "wilson_interval"]


class Summary(NamedTuple):
    """Mean, sample standard deviation, range and count of one measurement over several seeds.

    Taught in chapter 1.
    """

    mean: float
    std: float
    min: float
    max: float
    n: int


def summarise(values: Iterable[float] | torch.Tensor) -> Summary:
    """``Summary`` of two or more finite numbers (``std`` is the sample standard deviation, n - 1).

    ``values`` is a sequence of numbers or a 1-D tensor/array, e.g. one test accuracy per seed.
    Taught in chapter 1.
    """
    if isinstance(values, str | bytes) or not isinstance(values, Iterable | torch.Tensor):
        raise ValueError(
            f"values must be a sequence of numbers (one per seed), got {type(values).__name__}"
        )
    if hasattr(values, "ndim") and values.ndim != 1:
        raise ValueError(
            f"values must be 1-D (one number per seed), got shape {tuple(values.shape)}"
        )
    items = values.tolist() if hasattr(values, "tolist") else list(values)
    numbers = [
        check_number(f"values[{i}]", v.item() if hasattr(v, "item") else v)
        for i, v in enumerate(items)
    ]
    if len(numbers) < 2:
        raise ValueError(
            f"values must hold at least 2 numbers to have a spread, got {len(numbers)}"
        )
    return Summary(
        statistics.fmean(numbers),
        statistics.stdev(numbers),
        min(numbers),
        max(numbers),
        len(numbers),
    )


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (lo, hi) for a proportion of ``successes`` out of ``n`` trials.

    ``z`` is the normal quantile (1.96: about 95 %). Unlike p ± z·sqrt(p(1-p)/n) it stays inside
    [0, 1] and does not collapse to a point at 0 or n successes, so it is honest for small test sets.
    Taught in chapter 3.
    """
    n = check_int("n", n, low=1)
    successes = check_int("successes", successes, low=0, high=n)
    z = check_number("z", z, low=0.0, low_open=True)
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def format_mean_spread(summary: Summary, fmt: str = ".1%") -> str:
    """``summary`` as "mean ± std (n seeds)", both numbers formatted with ``fmt``, e.g. "96.2% ± 0.4% (5 seeds)".

    Taught in chapter 1.
    """
    if not isinstance(summary, Summary):
        raise ValueError(
            f"summary must be a Summary (from summarise), got {type(summary).__name__}"
        )
    if not isinstance(fmt, str):
        raise ValueError(f"fmt must be a format specification such as '.1%' or '.3f', got {fmt!r}")
    try:
        mean, std = format(summary.mean, fmt), format(summary.std, fmt)
    except ValueError as error:
        raise ValueError(
            f"fmt must be a format specification for a float such as '.1%' or '.3f', got {fmt!r}"
        ) from error
    return f"{mean} ± {std} ({summary.n} seeds)"
