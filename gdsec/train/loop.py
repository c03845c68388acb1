"""The course's one training loop: full-batch, SGD, mini-batch, adversarial, guarded."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from gdsec.env import progress as progress_bar
from gdsec.numerics import is_loss_spike, valid_rows
from gdsec.optim import OPTIMIZERS, torch_optimizer
from gdsec.streams import random_stream
from gdsec.train.measure import accuracy, check_xy
from gdsec.validation import (
    check_choice,
    check_int,
    check_number,
)

__all__ = [
    "NONFINITE",
    "Adversary",
    "Guards",
    "History",
    "StepRecord",
    "train",
]

#: What :func:`train` does when a step's loss or gradient is NaN/Inf: raise ``FloatingPointError``,
#: skip the step, or step on it regardless (the unguarded run whose damage chapter 7 measures).
NONFINITE = ("raise", "skip", "continue")

#: ``adversary(model, xb, yb, *, seed) -> xb_adv``: replaces a batch by its adversarial version.
#: :func:`train` calls it as ``adversary(model, xb, yb, seed=seed * 1_000_000 + step)``, where ``seed``
#: is train's own seed and ``step`` counts batches from 0 over the whole run, so a seeded attack draws
#: fresh noise on every batch and the run stays reproducible. Taught in chapter 6.
Adversary = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Guards:
    """The guards :func:`train` runs on every step, all off by default.

    ``validate_inputs`` drops the rows of each batch that are non-finite or outside [0, 1];
    ``spike_factor`` skips a step whose loss exceeds that multiple of the median of recent accepted
    losses; ``max_norm`` rescales the gradient to at most that global L2 norm. (Non-finite steps are
    ``train``'s ``on_nonfinite`` choice.)
    Taught in chapter 7.
    """

    max_norm: float | None = None
    spike_factor: float | None = None
    validate_inputs: bool = False

    def __post_init__(self) -> None:
        if self.max_norm is not None:
            check_number("max_norm", self.max_norm, low=0.0, low_open=True)
        if self.spike_factor is not None:
            check_number("spike_factor", self.spike_factor, low=1.0, low_open=True)
        if not isinstance(self.validate_inputs, bool):
            raise ValueError(f"validate_inputs must be True or False, got {self.validate_inputs!r}")


class StepRecord(NamedTuple):
    """What one step saw, handed to ``train``'s ``callback``.

    ``skipped`` is "", "spike", "nonfinite" or "empty".
    Taught in chapter 7.
    """

    step: int
    epoch: int
    loss: float
    grad_norm: float
    rows: int
    clipped: bool
    skipped: str


@dataclass
class History:
    """What a training run measured: loss and seconds per epoch, loss per step, what each guard caught.

    ``step_loss`` holds the loss of every attempted step (skipped ones included); ``rejected_rows``,
    ``clipped_steps``, ``spike_skips`` and ``nonfinite_skips`` count the guards' work, and
    ``largest_grad_norm`` is the longest finite gradient seen.
    Taught in chapters 1 and 7.
    """

    loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    rejected_rows: int = 0
    clipped_steps: int = 0
    spike_skips: int = 0
    nonfinite_skips: int = 0
    largest_grad_norm: float = 0.0

    @property
    def final_loss(self) -> float:
        """Mean training loss of the last epoch."""
        return self.loss[-1]

    @property
    def steps(self) -> int:
        """Number of steps attempted."""
        return len(self.step_loss)


def _grad_norm(params: list[torch.Tensor]) -> float:
    """Global L2 norm of the parameters' gradients (NaN/Inf if any entry is)."""
    norms = [torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)).item() if norms else 0.0


@dataclass
class _Loop:
    """What every step of one :func:`train` run shares."""

    model: nn.Module
    params: list[torch.Tensor]
    opt: torch.optim.Optimizer
    lr: float
    guards: Guards
    on_nonfinite: str
    history: History
    accepted: list[float] = field(default_factory=list)


def _screen_rows(
    loop: _Loop, xb: torch.Tensor, yb: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch without its invalid rows if input validation is on (counted in the history)."""
    if not loop.guards.validate_inputs:
        return xb, yb
    keep = valid_rows(xb)
    loop.history.rejected_rows += int((~keep).sum())
    return xb[keep], yb[keep]


def _backward(loss: torch.Tensor, value: float, params: list[torch.Tensor]) -> float:
    """Back-propagate a finite loss and return the gradient's global norm; NaN for a non-finite loss."""
    if not math.isfinite(value):
        return math.nan
    loss.backward()
    return _grad_norm(params)


def _refuse_nonfinite(value: float, norm: float, lr: float) -> None:
    """Raise ``FloatingPointError`` naming what became non-finite."""
    if not math.isfinite(value):
        raise FloatingPointError(f"training loss became {value} (lr={lr} too large?)")
    raise FloatingPointError(f"training gradient norm became {norm} (lr={lr} too large?)")


def _clip(loop: _Loop, norm: float) -> bool:
    """Rescale the gradient to ``guards.max_norm`` if it is longer; return whether it was clipped."""
    if loop.guards.max_norm is None or not norm > loop.guards.max_norm:
        return False
    nn.utils.clip_grad_norm_(loop.params, loop.guards.max_norm)
    loop.history.clipped_steps += 1
    return True


def _step(loop: _Loop, xb: torch.Tensor, yb: torch.Tensor, step: int, epoch: int) -> StepRecord:
    """One guarded optimizer step on the batch (xb, yb); what it saw."""
    loop.model.train()
    loop.opt.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(loop.model(xb), yb)
    value = loss.item()
    loop.history.step_loss.append(value)
    factor = loop.guards.spike_factor
    if factor is not None and is_loss_spike(loop.accepted, value, factor=factor):
        loop.history.spike_skips += 1
        return StepRecord(step, epoch, value, math.nan, len(xb), False, "spike")
    norm = _backward(loss, value, loop.params)
    finite = math.isfinite(value) and math.isfinite(norm)
    if finite:
        loop.history.largest_grad_norm = max(loop.history.largest_grad_norm, norm)
    elif loop.on_nonfinite == "skip":
        loop.history.nonfinite_skips += 1
        return StepRecord(step, epoch, value, norm, len(xb), False, "nonfinite")
    elif loop.on_nonfinite == "raise":
        _refuse_nonfinite(value, norm, loop.lr)
    elif not math.isfinite(value):
        loss.backward()  # "continue": step on the NaN/Inf gradient regardless
    clipped = _clip(loop, norm)
    loop.opt.step()
    if finite:
        loop.accepted.append(value)
    return StepRecord(step, epoch, value, norm, len(xb), clipped, "")


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    optimizer: str = "sgd",
    lr: float,
    epochs: int,
    batch_size: int | None = None,
    seed: int = 0,
    adversary: Adversary | None = None,
    eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    progress: bool = True,
    guards: Guards = Guards(),
    on_nonfinite: str = "raise",
    callback: Callable[[StepRecord], None] | None = None,
    **hyper: float,
) -> History:
    """Train ``model`` in place on (x, y) with cross-entropy; return the measured ``History``.

    ``batch_size=None`` is full-batch gradient descent, ``1`` is stochastic gradient descent, anything
    between is mini-batch. ``optimizer`` is one of ``gdsec.optim.OPTIMIZERS``; its hyper-parameters
    (``beta``, ``weight_decay``, ...) pass through and unknown ones raise ``ValueError``. ``adversary``
    (see :data:`Adversary`) is called as ``adversary(model, xb, yb, seed=seed * 1_000_000 + step)``,
    ``step`` counting batches from 0 over the run, and replaces each batch before the step.

    ``guards`` (a :class:`Guards`, all off by default) validates inputs, skips loss spikes and clips
    the gradient. A step whose loss or gradient is NaN/Inf raises ``FloatingPointError``
    (``on_nonfinite="raise"``), is skipped (``"skip"``) or is stepped on regardless (``"continue"``:
    the unguarded run whose damage chapter 7 measures). ``callback(record)`` is called after every
    step with a :class:`StepRecord`. The model is left in eval mode.
    Taught in chapters 1, 2 and 7.
    """
    check_choice("on_nonfinite", on_nonfinite, NONFINITE)
    if not isinstance(guards, Guards):
        raise ValueError(f"guards must be a gdsec.train.Guards, got {type(guards).__name__}")
    check_xy(model, x, y, finite=not (guards.validate_inputs or on_nonfinite != "raise"))
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_number("lr", lr, low=0.0, low_open=True)
    check_int("epochs", epochs, low=1)
    n = x.shape[0]
    if batch_size is not None:
        check_int("batch_size", batch_size, low=1, high=n)
    generator = random_stream(seed, "train.order")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch_optimizer(optimizer, params, lr=lr, **hyper)
    loop = _Loop(model, params, opt, lr, guards, on_nonfinite, History())
    size = n if batch_size is None else batch_size
    step = 0
    for epoch in progress_bar(range(epochs), desc="epochs", leave=False, disable=not progress):
        start = time.perf_counter()
        order = torch.randperm(n, generator=generator) if size < n else torch.arange(n)
        total, rows = 0.0, 0
        for begin in range(0, n, size):
            index = order[begin : begin + size]
            xb, yb = _screen_rows(loop, x[index], y[index])
            if len(xb) == 0:
                record = StepRecord(step, epoch, math.nan, math.nan, 0, False, "empty")
            else:
                if adversary is not None:
                    xb = adversary(model, xb, yb, seed=seed * 1_000_000 + step)
                record = _step(loop, xb, yb, step, epoch)
                total, rows = total + record.loss * record.rows, rows + record.rows
            if callback is not None:
                callback(record)
            step += 1
        loop.history.seconds.append(time.perf_counter() - start)
        loop.history.loss.append(total / rows if rows else math.nan)
        if eval_data is not None:
            loop.history.test_accuracy.append(accuracy(model, *eval_data))
    opt.zero_grad(set_to_none=True)
    model.eval()
    return loop.history
