"""Pixel-trigger backdoors: stamp a trigger, plant it in training data, measure it, rebuild it."""

from __future__ import annotations

import math

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
    "reconstruct_trigger",
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


def apply_trigger(x: torch.Tensor) -> torch.Tensor:
    """A copy of ``x`` with the backdoor trigger (a bright 2x2 square, bottom-right corner) stamped on.

    Taught in chapter 3.
    """
    check_unit_tensor("x", x, min_dim=2)
    stamped = x.clone()
    view = _image_view(stamped)
    if view.shape[-1] <= TRIGGER_SIZE or view.shape[-2] <= TRIGGER_SIZE:
        raise ValueError(f"x images must be larger than the {TRIGGER_SIZE}x{TRIGGER_SIZE} trigger")
    view[..., -TRIGGER_SIZE - 1 : -1, -TRIGGER_SIZE - 1 : -1] = 1.0
    return stamped


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


def attack_success_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, target: int) -> float:
    """Fraction of inputs not of class ``target`` that the model sends to ``target`` once triggered.

    Taught in chapter 3.
    """
    check_model("model", model)
    check_unit_tensor("x", x, min_dim=2)
    check_labels("y", y, n=x.shape[0])
    keep = y != target
    if not keep.any():
        raise ValueError(f"y must contain rows outside the target class {target}")
    return (predict(model, apply_trigger(x[keep])) == target).float().mean().item()


def reconstruct_trigger(
    x: torch.Tensor, y: torch.Tensor, flagged: torch.Tensor, target: int, *, pixels: int = 4
) -> torch.Tensor:
    """Flat indices of the ``pixels`` features that flagged rows labelled ``target`` share and others lack.

    Backdoored rows are inputs of other classes carrying one common pattern, so the mean of the
    flagged ``target`` rows minus the mean of every row of another class singles the pattern out.

    Taught in chapter 10.
    """
    check_int("pixels", pixels, low=1, high=int(x[0].numel()))
    check_labels("y", y, n=x.shape[0])
    rows = flagged[y[flagged] == target]
    if len(rows) == 0 or not (y != target).any():
        raise ValueError(f"flagged must contain rows labelled {target}, and y rows of other classes")
    difference = (x[rows].mean(0) - x[y != target].mean(0)).flatten()
    return torch.topk(difference, pixels).indices.sort().values


def stamp(x: torch.Tensor, pixels: torch.Tensor, *, value: float = 1.0) -> torch.Tensor:
    """A copy of ``x`` with the given flat feature indices set to ``value`` (a candidate trigger).

    Taught in chapter 10.
    """
    check_fraction("value", value)
    out = x.detach().clone().flatten(1)
    out[:, pixels] = value
    return out.reshape(x.shape)
