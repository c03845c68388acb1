"""Pixel-trigger backdoors: plant a trigger in training data, measure it, rebuild it and stamp it."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from gdsec.poisoning._rows import count_rows
from gdsec.streams import random_stream
from gdsec.train import predict
from gdsec.validation import (
    check_fraction,
    check_int,
    check_labels,
    check_model,
    check_unit_tensor,
)

__all__ = [
    "TRIGGER_SIZE",
    "add_backdoor",
    "apply_trigger",
    "attack_success_rate",
    "corner_trigger",
    "rebuild_trigger",
    "stamp",
]

#: Side length (pixels) of the square trigger stamped in the bottom-right corner.
TRIGGER_SIZE = 2


def _image_view(x: torch.Tensor) -> torch.Tensor:
    """View ``x`` as (N, ..., H, W): images stay as they are, flat rows (N, d) with square d become (N, s, s)."""
    if x.dim() >= 3:
        return x
    side = math.isqrt(x.shape[1])
    if x.dim() != 2 or side * side != x.shape[1] or side < TRIGGER_SIZE + 1:
        raise ValueError(
            f"x must be images (N, ..., H, W) or flat square images (N, s*s), got shape {tuple(x.shape)}"
        )
    return x.reshape(x.shape[0], side, side)


def corner_trigger(row_shape: Sequence[int]) -> torch.Tensor:
    """Flat feature indices of the backdoor trigger (a 2x2 square one pixel in from the bottom-right
    corner) in a row of ``row_shape``: an image (..., H, W) or a flat square image (s*s,).

    Taught in chapter 3.
    """
    view = _image_view(torch.zeros(1, *(int(n) for n in row_shape)))
    if view.shape[-1] <= TRIGGER_SIZE or view.shape[-2] <= TRIGGER_SIZE:
        raise ValueError(f"x images must be larger than the {TRIGGER_SIZE}x{TRIGGER_SIZE} trigger")
    corner = torch.zeros(view.shape[1:], dtype=torch.bool)
    corner[..., -TRIGGER_SIZE - 1 : -1, -TRIGGER_SIZE - 1 : -1] = True
    return corner.flatten().nonzero().flatten()


def apply_trigger(x: torch.Tensor) -> torch.Tensor:
    """A copy of ``x`` with the backdoor trigger (a bright 2x2 square, bottom-right corner) stamped on.

    Taught in chapter 3.
    """
    check_unit_tensor("x", x, min_dim=2)
    return stamp(x, corner_trigger(x.shape[1:]), 1.0)


def add_backdoor(
    x: torch.Tensor, y: torch.Tensor, *, target: int, fraction: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stamp the trigger on ``round(fraction * N)`` rows not of class ``target`` and relabel them ``target``.

    Returns ``(x_poisoned, y_poisoned, index)``: copies of the data and the sorted poisoned row indices.
    ``target`` must be one of the classes present in ``y``.

    Taught in chapter 3.
    """
    check_unit_tensor("x", x, min_dim=2)
    check_labels("y", y, n=x.shape[0])
    check_int("target", target, low=0)
    present = y.unique().tolist()
    if target not in present:
        raise ValueError(f"target must be one of the classes present in y {present}, got {target}")
    check_fraction("fraction", fraction)
    generator = random_stream(seed, "poisoning.add_backdoor")
    k = count_rows(fraction, x.shape[0])
    candidates = torch.nonzero(y != target).flatten()
    if k > len(candidates):
        raise ValueError(
            f"fraction must leave enough rows outside class {target}: asked for {k}, only {len(candidates)} exist"
        )
    index = candidates[torch.randperm(len(candidates), generator=generator)[:k]].sort().values
    x_poisoned, y_poisoned = x.clone(), y.clone()
    if k:
        x_poisoned[index] = apply_trigger(x[index])
        y_poisoned[index] = target
    return x_poisoned, y_poisoned, index


def attack_success_rate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    target: int,
    trigger: tuple[torch.Tensor, torch.Tensor | float] | None = None,
) -> float:
    """Fraction of inputs not of class ``target`` that the model sends to ``target`` once triggered.

    ``trigger`` is ``(features, values)`` for :func:`stamp` (a rebuilt or any other trigger); by
    default the corner trigger of :func:`apply_trigger`.

    Taught in chapter 3.
    """
    check_model("model", model)
    check_unit_tensor("x", x, min_dim=2)
    check_labels("y", y, n=x.shape[0])
    keep = y != target
    if not keep.any():
        raise ValueError(f"y must contain rows outside the target class {target}")
    stamped = apply_trigger(x[keep]) if trigger is None else stamp(x[keep], *trigger)
    return (predict(model, stamped) == target).float().mean().item()


def rebuild_trigger(
    x: torch.Tensor, y: torch.Tensor, flagged: torch.Tensor, target: int, *, max_features: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat feature indices and values of the pattern the flagged rows labelled ``target`` share.

    Backdoored rows are inputs of other classes carrying one common pattern, so the mean of the
    flagged ``target`` rows minus the mean of every row of another class singles the pattern out.
    The difference is taken in absolute value, so ink that was removed counts like ink that was
    added; every feature within half of the largest difference is kept (at most ``max_features``),
    with the flagged rows' mean as its value, ready for :func:`stamp`.

    Taught in chapter 10.
    """
    check_labels("y", y, n=x.shape[0])
    max_features = check_int("max_features", max_features, low=1)
    rows = flagged[y[flagged] == target]
    if len(rows) == 0 or not (y != target).any():
        raise ValueError(
            f"flagged must contain rows labelled {target}, and y rows of other classes"
        )
    flat = x.flatten(1)
    mean = flat[rows].mean(0)
    size = (mean - flat[y != target].mean(0)).abs()
    top = torch.topk(size, min(max_features, size.numel()))
    keep = top.indices[top.values >= 0.5 * top.values[0]].sort().values
    return keep, mean[keep]


def stamp(
    x: torch.Tensor, features: torch.Tensor | Sequence[int], values: torch.Tensor | float
) -> torch.Tensor:
    """A copy of ``x`` with the flat ``features`` of every row set to ``values`` (one per feature, or one number).

    Stamps a trigger rebuilt by :func:`rebuild_trigger`, or any fixed pattern of pixels.

    Taught in chapter 10.
    """
    check_unit_tensor("x", x, min_dim=2)
    features = torch.as_tensor(features)
    d = int(x[0].numel())
    if features.dim() != 1 or features.is_floating_point() or features.dtype == torch.bool:
        raise ValueError(
            f"features must be a 1-D sequence of flat feature indices, got {features!r}"
        )
    if len(features) and (features.min() < 0 or features.max() >= d):
        raise ValueError(f"features must be flat indices in [0, {d}), got {features.tolist()}")
    if isinstance(values, torch.Tensor):
        if values.shape not in ((), features.shape):
            raise ValueError(
                f"values must be one number or one per feature {tuple(features.shape)}, got shape {tuple(values.shape)}"
            )
        if values.numel() and not bool(((values >= 0) & (values <= 1)).all()):
            raise ValueError(f"values must lie in [0, 1], got {values.tolist()}")
    else:
        check_fraction("values", values)
    out = x.detach().clone().flatten(1)
    out[:, features] = values.to(out.dtype) if isinstance(values, torch.Tensor) else values
    return out.reshape(x.shape)
