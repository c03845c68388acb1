"""Numerical exploitation of training and the guards against it: exploding, vanishing and non-finite values.

The attacks here are data an attacker can slip into a training stream (extreme values, NaN, Inf);
the guards are the cheap checks a training loop can run on every step: input validation, gradient
clipping, loss-spike detection and non-finite detection. :func:`gdsec.train.train` runs them (its
``guards=Guards(validate_inputs, max_norm, spike_factor)`` and ``on_nonfinite="skip"``) with the checks
defined here, and counts in its ``History`` what each guard caught.
"""

from __future__ import annotations

import statistics
from typing import NamedTuple

import torch
from torch import nn

from gdsec.models import eval_mode
from gdsec.streams import random_stream
from gdsec.validation import (
    check_batch,
    check_choice,
    check_fraction,
    check_int,
    check_labels,
    check_model,
    check_number,
)

__all__ = [
    "CORRUPTIONS",
    "Activity",
    "corrupt_rows",
    "is_loss_spike",
    "layer_gradient_norms",
    "parameters_finite",
    "row_gradient_norms",
    "unit_activity",
    "valid_rows",
]

CORRUPTIONS = ("nan", "inf", "scale")


def _check_any_batch(name: str, x: object) -> torch.Tensor:
    """``x`` if it is a floating-point tensor with a batch axis; NaN and Inf allowed (they are the point)."""
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        check_batch(name, torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0))
        return x
    return check_batch(name, x)


def layer_gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """L2 norm of the loss gradient for each weight matrix/kernel, input layer first.

    Leaves the parameters' ``.grad`` and the model's mode as they were.
    Taught in chapter 7.
    """
    check_model("model", model)
    check_batch("x", x)
    check_labels("y", y, n=x.shape[0])
    weights = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    if not weights:
        raise ValueError(
            "model must have at least one weight matrix or kernel (a parameter with dim >= 2)"
        )
    with eval_mode(model):
        loss = nn.functional.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, weights)
    return [g.norm().item() for g in grads]


def row_gradient_norms(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, layer: int = 0
) -> torch.Tensor:
    """L2 norm, for each row of ``x`` alone, of its cross-entropy gradient for weight matrix ``layer`` (0 = input).

    One vectorised backward pass per row (``torch.func.vmap``); the model's parameters, ``.grad`` and
    mode are left as they were.
    Taught in chapter 7.
    """
    check_model("model", model)
    check_batch("x", x)
    check_labels("y", y, n=x.shape[0])
    names = [n for n, p in model.named_parameters() if p.requires_grad and p.dim() >= 2]
    check_int("layer", layer, low=0, high=len(names) - 1)
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def row_loss(
        values: dict[str, torch.Tensor], row: torch.Tensor, label: torch.Tensor
    ) -> torch.Tensor:
        logits = torch.func.functional_call(model, {**buffers, **values}, (row.unsqueeze(0),))
        return nn.functional.cross_entropy(logits, label.unsqueeze(0))

    with eval_mode(model):
        grads = torch.func.vmap(torch.func.grad(row_loss), in_dims=(None, 0, 0))(params, x, y)
    return grads[names[layer]].flatten(1).norm(dim=1).detach()


class Activity(NamedTuple):
    """How alive a network's units are on a batch: dead ReLUs and saturated sigmoid/tanh units.

    Taught in chapter 7.
    """

    dead_fraction: float
    saturated_fraction: float


def unit_activity(model: nn.Module, x: torch.Tensor, *, saturation: float = 0.99) -> Activity:
    """Fraction of ReLU units that output 0 on every row of ``x`` (dead), and of sigmoid/tanh outputs
    within ``1 - saturation`` of their bounds (saturated, so their local derivative is near zero).

    Taught in chapter 7.
    """
    check_model("model", model)
    check_batch("x", x)
    check_number("saturation", saturation, low=0.0, high=1.0, low_open=True, high_open=True)
    outputs: list[tuple[str, torch.Tensor]] = []
    hooks = []
    for module in model.modules():
        for kind, cls in (("relu", nn.ReLU), ("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh)):
            if isinstance(module, cls):
                hooks.append(
                    module.register_forward_hook(
                        lambda _m, _i, out, k=kind: outputs.append((k, out))
                    )
                )
    try:
        with eval_mode(model), torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    dead = total_relu = saturated = total_bounded = 0
    for kind, out in outputs:
        flat = out.reshape(out.shape[0], -1)
        if kind == "relu":
            dead += int((flat == 0).all(dim=0).sum())
            total_relu += flat.shape[1]
        else:
            level = flat if kind == "tanh" else 2 * flat - 1  # map sigmoid's (0, 1) onto (-1, 1)
            saturated += int((level.abs() >= saturation).sum())
            total_bounded += flat.numel()
    return Activity(
        dead / total_relu if total_relu else 0.0,
        saturated / total_bounded if total_bounded else 0.0,
    )


def corrupt_rows(
    x: torch.Tensor, *, fraction: float, kind: str = "nan", scale: float = 1e3, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """An attacker's numeric poison: a copy of ``x`` where ``round(fraction * N)`` rows are corrupted.

    ``kind="nan"`` / ``"inf"`` sets one random entry of each chosen row to NaN / +Inf; ``"scale"``
    multiplies the whole row by ``scale`` (an extreme but finite input). Returns (x_corrupted, index).
    Taught in chapter 7.
    """
    _check_any_batch("x", x)
    check_fraction("fraction", fraction)
    check_choice("kind", kind, CORRUPTIONS)
    check_number("scale", scale, low=0.0, low_open=True)
    generator = random_stream(seed, "numerics.corrupt_rows")
    n = x.shape[0]
    index = torch.randperm(n, generator=generator)[: round(fraction * n)].sort().values
    corrupted = x.detach().clone()
    if kind == "scale":
        corrupted[index] = corrupted[index] * scale
        return corrupted, index
    flat = corrupted.reshape(n, -1)
    entry = torch.randint(flat.shape[1], (len(index),), generator=generator)
    flat[index, entry] = float("nan") if kind == "nan" else float("inf")
    return flat.reshape(x.shape), index


def valid_rows(x: torch.Tensor, *, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Boolean mask of the rows of ``x`` that are finite and inside [low, high]: the input-validation guard.

    Taught in chapter 7.
    """
    _check_any_batch("x", x)
    check_number("low", low)
    check_number("high", high, low=low, low_open=True)
    flat = x.reshape(x.shape[0], -1)
    finite = torch.isfinite(flat).all(dim=1)
    inside = (torch.nan_to_num(flat, nan=low) >= low).all(dim=1) & (
        torch.nan_to_num(flat, nan=low) <= high
    ).all(dim=1)
    return finite & inside


def is_loss_spike(
    recent: list[float], loss: float, *, factor: float = 10.0, warmup: int = 5, window: int = 20
) -> bool:
    """True if ``loss`` exceeds ``factor`` times the median of the last ``window`` accepted losses.

    Only magnitude is judged: a NaN loss is not a spike (that is the non-finite guard's job).
    Taught in chapter 7.
    """
    check_number("factor", factor, low=1.0, low_open=True)
    check_int("warmup", warmup, low=1)
    check_int("window", window, low=1)
    if len(recent) < warmup:
        return False
    return loss > factor * statistics.median(recent[-window:])


def parameters_finite(model: nn.Module) -> bool:
    """True if every parameter of ``model`` is finite (no NaN or Inf has reached the weights).

    Taught in chapter 7.
    """
    check_model("model", model)
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())
