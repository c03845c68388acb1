"""Notebook bookkeeping: glue a chapter's measured numbers for its prose, as plain Python numbers.

A chapter runs its experiment in a visible cell, then glues what the prose cites in a hidden cell
right after it. These helpers keep that cell short. They import ``myst_nb``, which only the book
needs, so ``import gdsec`` does not import this module.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

import torch
from myst_nb import glue

from gdsec.seeds import Summary, summarise
from gdsec.validation import check_choice

__all__ = ["SPREAD_SUFFIXES", "SUMMARY_STATS", "glue_many", "glue_summary", "plain_number"]

SUMMARY_STATS = ("mean", "sd", "min", "max", "n")
"""What ``glue_summary`` can glue: the mean under the key itself, the others under suffixed keys."""

SPREAD_SUFFIXES = ("_sd", "_std")
"""The two suffixes the chapters' prose uses for a standard deviation over seeds."""

_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _check_key(name: str, key: object) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(
            f"{name} must be a glue key of letters, digits and '_' such as 'ch05_clean_acc', got {key!r}"
        )
    return key


def plain_number(name: str, value: object) -> int | float:
    """``value`` as a plain Python int or float (from a NumPy or one-element torch scalar too).

    Glued NumPy and torch scalars do not format in the prose, so everything glued passes through
    here. Raises ``ValueError`` naming ``name`` for anything else, or for NaN and infinities.
    Used in chapters 1-10.
    """
    if isinstance(value, torch.Tensor) and value.numel() != 1:
        raise ValueError(f"{name} must be one number, got a tensor of shape {tuple(value.shape)}")
    if hasattr(value, "item") and not isinstance(value, int | float):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(
            f"{name} must be a number (int, float, or a NumPy/torch scalar), got {value!r}"
        )
    if isinstance(value, int):
        return int(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def glue_many(values: Mapping[str, object]) -> None:
    """Glue each ``key: number`` of ``values`` (hidden, ``display=False``) as a plain int or float.

    Write the full keys (``{"ch01_power_lam": lam, ...}``) so that a key cited in the prose can be
    found in the code. Used in chapters 1-10.
    """
    if not isinstance(values, Mapping) or not values:
        raise ValueError(
            f"values must be a non-empty mapping of glue key to number, got {values!r}"
        )
    numbers = {
        _check_key("values key", k): plain_number(f"values[{k!r}]", v) for k, v in values.items()
    }
    for key, number in numbers.items():
        glue(key, number, display=False)


def glue_summary(
    key: str,
    values: Summary | Iterable[float] | torch.Tensor,
    *,
    spread: str = "_sd",
    stats: Iterable[str] = ("mean", "sd"),
) -> Summary:
    """Glue the mean of per-seed ``values`` as ``key`` and their sample standard deviation as ``key + spread``.

    ``stats`` picks what to glue from ``SUMMARY_STATS``: "min", "max" and "n" go to ``key_min``,
    ``key_max`` and ``key_n``. ``spread`` is one of ``SPREAD_SUFFIXES``. ``values`` is one number per
    seed (two or more), or a ``Summary`` already computed. Returns the ``Summary``.
    Used in chapters 1-10.
    """
    key = _check_key("key", key)
    spread = check_choice("spread", spread, SPREAD_SUFFIXES)
    if isinstance(stats, str) or not isinstance(stats, Iterable):
        raise ValueError(f"stats must be a sequence of names from {SUMMARY_STATS}, got {stats!r}")
    chosen = [check_choice("stats", s, SUMMARY_STATS) for s in stats]
    if not chosen:
        raise ValueError(f"stats must name at least one of {SUMMARY_STATS}, got none")
    summary = values if isinstance(values, Summary) else summarise(values)
    keys = {
        "mean": key,
        "sd": key + spread,
        "min": f"{key}_min",
        "max": f"{key}_max",
        "n": f"{key}_n",
    }
    numbers = {
        "mean": summary.mean,
        "sd": summary.std,
        "min": summary.min,
        "max": summary.max,
        "n": summary.n,
    }
    glue_many({keys[s]: numbers[s] for s in chosen})
    return summary
