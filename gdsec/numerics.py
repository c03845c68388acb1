"""Numerical exploitation of training and the guards against it: exploding, vanishing and non-finite values.

The attacks here are data an attacker can slip into a training stream (extreme values, NaN, Inf);
the guards are the cheap checks a training loop can run on every step: input validation, gradient
clipping, loss-spike detection and non-finite detection. :func:`guarded_train` runs the same
mini-batch SGD as :func:`gdsec.train.train` with any combination of guards switched on, and counts
what each guard caught.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from gdsec.models import eval_mode
from gdsec.optim import OPTIMIZERS, torch_optimizer
from gdsec.validation import (
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
    "GuardLog",
    "corrupt_rows",
    "guarded_train",
    "is_loss_spike",
    "layer_gradient_norms",
    "parameters_finite",
    "unit_activity",
    "valid_rows",
]

CORRUPTIONS = ("nan", "inf", "scale")


def _check_batch(x: object, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty floating-point tensor with a batch axis, shape (N, ...)")
    return x


def layer_gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """L2 norm of the loss gradient for each weight matrix/kernel, input layer first.

    Leaves the parameters' ``.grad`` and the model's mode as they were.
    """
    check_model("model", model)
    _check_batch(x)
    check_labels("y", y, n=x.shape[0])
    weights = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    if not weights:
        raise ValueError("model must have at least one weight matrix or kernel (a parameter with dim >= 2)")
    with eval_mode(model):
        loss = nn.functional.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, weights)
    return [g.norm().item() for g in grads]


class Activity(NamedTuple):
    """How alive a network's units are on a batch: dead ReLUs and saturated sigmoid/tanh units."""

    dead_fraction: float
    saturated_fraction: float


def unit_activity(model: nn.Module, x: torch.Tensor, *, saturation: float = 0.99) -> Activity:
    """Fraction of ReLU units that output 0 on every row of ``x`` (dead), and of sigmoid/tanh outputs
    within ``1 - saturation`` of their bounds (saturated, so their local derivative is near zero)."""
    check_model("model", model)
    _check_batch(x)
    check_number("saturation", saturation, low=0.0, high=1.0, low_open=True, high_open=True)
    outputs: list[tuple[str, torch.Tensor]] = []
    hooks = []
    for module in model.modules():
        for kind, cls in (("relu", nn.ReLU), ("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh)):
            if isinstance(module, cls):
                hooks.append(module.register_forward_hook(lambda _m, _i, out, k=kind: outputs.append((k, out))))
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
    return Activity(dead / total_relu if total_relu else 0.0, saturated / total_bounded if total_bounded else 0.0)


def corrupt_rows(
    x: torch.Tensor, *, fraction: float, kind: str = "nan", scale: float = 1e3, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """An attacker's numeric poison: a copy of ``x`` where ``round(fraction * N)`` rows are corrupted.

    ``kind="nan"`` / ``"inf"`` sets one random entry of each chosen row to NaN / +Inf; ``"scale"``
    multiplies the whole row by ``scale`` (an extreme but finite input). Returns (x_corrupted, index).
    """
    _check_batch(x)
    check_fraction("fraction", fraction)
    check_choice("kind", kind, CORRUPTIONS)
    check_number("scale", scale, low=0.0, low_open=True)
    generator = torch.Generator().manual_seed(check_int("seed", seed, low=0))
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
    """Boolean mask of the rows of ``x`` that are finite and inside [low, high]: the input-validation guard."""
    _check_batch(x)
    check_number("low", low)
    check_number("high", high, low=low, low_open=True)
    flat = x.reshape(x.shape[0], -1)
    finite = torch.isfinite(flat).all(dim=1)
    inside = (torch.nan_to_num(flat, nan=low) >= low).all(dim=1) & (torch.nan_to_num(flat, nan=low) <= high).all(dim=1)
    return finite & inside


def is_loss_spike(
    recent: list[float], loss: float, *, factor: float = 10.0, warmup: int = 5, window: int = 20
) -> bool:
    """True if ``loss`` exceeds ``factor`` times the median of the last ``window`` accepted losses.

    Only magnitude is judged: a NaN loss is not a spike (that is the non-finite guard's job).
    """
    check_number("factor", factor, low=1.0, low_open=True)
    check_int("warmup", warmup, low=1)
    check_int("window", window, low=1)
    if len(recent) < warmup:
        return False
    return loss > factor * statistics.median(recent[-window:])


def parameters_finite(model: nn.Module) -> bool:
    """True if every parameter of ``model`` is finite (no NaN or Inf has reached the weights)."""
    check_model("model", model)
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


@dataclass
class GuardLog:
    """What a guarded run saw: loss per step and how often each guard fired."""

    step_loss: list[float] = field(default_factory=list)
    rejected_rows: int = 0
    clipped_steps: int = 0
    spike_skips: int = 0
    nonfinite_skips: int = 0
    largest_grad_norm: float = 0.0

    @property
    def steps(self) -> int:
        """Number of steps attempted."""
        return len(self.step_loss)


def guarded_train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    lr: float,
    epochs: int,
    batch_size: int,
    optimizer: str = "sgd",
    seed: int = 0,
    validate_inputs: bool = False,
    clip_norm: float | None = None,
    spike_factor: float | None = None,
    skip_nonfinite: bool = False,
) -> GuardLog:
    """Mini-batch training with cross-entropy, as :func:`gdsec.train.train`, plus optional guards.

    ``validate_inputs`` drops rows that are non-finite or outside [0, 1]; ``clip_norm`` rescales the
    gradient to at most that global L2 norm; ``spike_factor`` skips a step whose loss exceeds that
    multiple of the recent median; ``skip_nonfinite`` skips a step whose loss or gradient is NaN/Inf.
    Unlike ``train`` it never raises on a NaN loss: an unguarded run carries on, so the damage can be
    measured. The model is trained in place and left in eval mode.
    """
    check_model("model", model)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2 or x.shape[0] == 0:
        raise ValueError("x must be a non-empty floating-point tensor with a batch axis, shape (N, ...)")
    check_labels("y", y, n=x.shape[0])
    check_number("lr", lr, low=0.0, low_open=True)
    check_int("epochs", epochs, low=1)
    check_int("batch_size", batch_size, low=1, high=x.shape[0])
    check_choice("optimizer", optimizer, OPTIMIZERS)
    if clip_norm is not None:
        check_number("clip_norm", clip_norm, low=0.0, low_open=True)
    if spike_factor is not None:
        check_number("spike_factor", spike_factor, low=1.0, low_open=True)
    generator = torch.Generator().manual_seed(check_int("seed", seed, low=0))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch_optimizer(optimizer, params, lr=lr)
    log = GuardLog()
    accepted: list[float] = []
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=generator)
        for begin in range(0, x.shape[0], batch_size):
            index = order[begin : begin + batch_size]
            xb, yb = x[index], y[index]
            if validate_inputs:
                keep = valid_rows(xb)
                log.rejected_rows += int((~keep).sum())
                xb, yb = xb[keep], yb[keep]
                if len(xb) == 0:
                    continue
            model.train()
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(xb), yb)
            log.step_loss.append(loss.item())
            if spike_factor is not None and is_loss_spike(accepted, loss.item(), factor=spike_factor):
                log.spike_skips += 1
                continue
            loss.backward()
            norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None])
            ).item()
            finite = bool(torch.isfinite(loss)) and math.isfinite(norm)
            if finite:
                log.largest_grad_norm = max(log.largest_grad_norm, norm)
            if skip_nonfinite and not finite:
                log.nonfinite_skips += 1
                continue
            if clip_norm is not None and norm > clip_norm:
                nn.utils.clip_grad_norm_(params, clip_norm)
                log.clipped_steps += 1
            opt.step()
            if finite:
                accepted.append(loss.item())
    opt.zero_grad(set_to_none=True)
    model.eval()
    return log
