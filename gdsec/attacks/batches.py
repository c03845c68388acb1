"""Attacks in bounded memory: :func:`in_batches` runs any attack a chunk of rows at a time.

Every attack of :mod:`gdsec.attacks` treats its rows independently (each row has its own step
sizes, targets, query budget and stopping rule), so running it on consecutive chunks of ``x`` and
concatenating the results is the same attack, with memory bounded by the chunk instead of the
split. A deterministic attack (``fgsm``, ``pgd(random_start=False)``, ``deepfool``, ``cw_l2``,
``fab``) gives the same rows chunked or not (up to float rounding of batched matrix products). A
randomised attack draws its stream from its ``seed`` once per call, so each chunk starts that stream
afresh: the first chunk gets exactly the unchunked draws, later chunks the draws of the first rows,
which are as random but not the same numbers. ``batch_size=None``, or a chunk as large as the
split, returns the attack itself, so the numbers are unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from gdsec.validation import check_int

__all__ = ["check_batch_size", "in_batches"]


def check_batch_size(name: str, value: object) -> int | None:
    """``value`` as a positive number of rows per chunk, or None (all rows at once). Used in chapter 10."""
    return None if value is None else check_int(name, value, low=1)


def in_batches(
    attack: Callable[..., torch.Tensor], batch_size: int | None
) -> Callable[..., torch.Tensor]:
    """``attack(model, x, y, ...)`` run on ``batch_size`` rows at a time, results concatenated in order.

    ``y`` may be None (``deepfool``); every other argument is passed unchanged to each chunk.
    ``batch_size=None`` returns ``attack`` itself. Used in chapter 10.
    """
    batch_size = check_batch_size("batch_size", batch_size)
    if batch_size is None:
        return attack

    @functools.wraps(attack)
    def batched(model: Any, x: Any, y: Any = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[0] <= batch_size:
            return attack(model, x, y, *args, **kwargs)
        if isinstance(y, torch.Tensor) and (y.dim() == 0 or y.shape[0] != x.shape[0]):
            return attack(model, x, y, *args, **kwargs)  # the attack names the mismatch
        chunks = []
        for start in range(0, x.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            chunks.append(attack(model, x[rows], None if y is None else y[rows], *args, **kwargs))
        return torch.cat(chunks)

    return batched
