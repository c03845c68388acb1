"""The course's one training loop (full-batch, SGD, mini-batch, adversarial, guarded) and evaluation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from gdsec.env import progress as progress_bar
from gdsec.models import eval_mode
from gdsec.numerics import is_loss_spike, valid_rows
from gdsec.optim import OPTIMIZERS, torch_optimizer
from gdsec.streams import random_stream
from gdsec.validation import (
    check_batch,
    check_choice,
    check_int,
    check_labels,
    check_model,
    check_number,
)

__all__ = ["NONFINITE", "Adversary", "History", "StepRecord", "accuracy", "gradient_noise", "loss_gradient", "predict", "train"]

#: What :func:`train` does when a step's loss or gradient is NaN/Inf and ``skip_nonfinite`` is off.
NONFINITE = ("raise", "continue")

#: ``adversary(model, xb, yb, *, seed) -> xb_adv``: replaces a batch by its adversarial version.
#: :func:`train` calls it as ``adversary(model, xb, yb, seed=seed * 1_000_000 + step)``, where ``seed``
#: is train's own seed and ``step`` counts batches from 0 over the whole run, so a seeded attack draws
#: fresh noise on every batch and the run stays reproducible. Taught in chapter 6.
Adversary = Callable[..., torch.Tensor]


class StepRecord(NamedTuple):
    """What one step saw, handed to ``train``'s ``callback``: ``skipped`` is "", "spike", "nonfinite" or "empty".

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
    """What a training run measured: loss and seconds per epoch, loss per step, and what each guard caught.

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


def _check_xy(model: nn.Module, x: object, y: object, *, finite: bool = True) -> None:
    check_model("model", model)
    if not finite and isinstance(x, torch.Tensor) and x.is_floating_point():
        check_batch("x", torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0))
    else:
        check_batch("x", x)
    check_labels("y", y, n=x.shape[0])  # type: ignore[union-attr]


def _grad_norm(params: list[torch.Tensor]) -> float:
    """Global L2 norm of the parameters' gradients (NaN/Inf if any entry is)."""
    norms = [torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)).item() if norms else 0.0


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
    max_norm: float | None = None,
    skip_nonfinite: bool = False,
    spike_factor: float | None = None,
    validate_inputs: bool = False,
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

    Guards, all off by default: ``validate_inputs`` drops the rows of each batch that are non-finite or
    outside [0, 1]; ``spike_factor`` skips a step whose loss exceeds that multiple of the median of
    recent accepted losses; ``skip_nonfinite`` skips a step whose loss or gradient is NaN/Inf;
    ``max_norm`` rescales the gradient to at most that global L2 norm. Otherwise a non-finite loss or
    gradient raises ``FloatingPointError`` (``on_nonfinite="raise"``) or is stepped on regardless
    (``"continue"``: the unguarded run whose damage chapter 7 measures). ``callback(record)`` is called
    after every step with a :class:`StepRecord`. The model is left in eval mode.
    Taught in chapters 1, 2 and 7.
    """
    check_choice("on_nonfinite", on_nonfinite, NONFINITE)
    _check_xy(model, x, y, finite=not (validate_inputs or skip_nonfinite or on_nonfinite == "continue"))
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_number("lr", lr, low=0.0, low_open=True)
    check_int("epochs", epochs, low=1)
    n = x.shape[0]
    if batch_size is not None:
        check_int("batch_size", batch_size, low=1, high=n)
    if max_norm is not None:
        check_number("max_norm", max_norm, low=0.0, low_open=True)
    if spike_factor is not None:
        check_number("spike_factor", spike_factor, low=1.0, low_open=True)
    generator = random_stream(seed, "train.order")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch_optimizer(optimizer, params, lr=lr, **hyper)
    size = n if batch_size is None else batch_size
    history = History()
    accepted: list[float] = []
    step = 0
    for epoch in progress_bar(range(epochs), desc="epochs", leave=False, disable=not progress):
        start = time.perf_counter()
        order = torch.randperm(n, generator=generator) if size < n else torch.arange(n)
        total, rows = 0.0, 0
        for begin in range(0, n, size):
            index = order[begin : begin + size]
            xb, yb = x[index], y[index]
            if validate_inputs:
                keep = valid_rows(xb)
                history.rejected_rows += int((~keep).sum())
                xb, yb = xb[keep], yb[keep]
            if len(xb) == 0:
                if callback is not None:
                    callback(StepRecord(step, epoch, math.nan, math.nan, 0, False, "empty"))
                step += 1
                continue
            if adversary is not None:
                xb = adversary(model, xb, yb, seed=seed * 1_000_000 + step)
            model.train()
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(xb), yb)
            value = loss.item()
            history.step_loss.append(value)
            total, rows = total + value * len(xb), rows + len(xb)
            norm, clipped, skipped = math.nan, False, ""
            if spike_factor is not None and is_loss_spike(accepted, value, factor=spike_factor):
                history.spike_skips, skipped = history.spike_skips + 1, "spike"
            else:
                if math.isfinite(value):
                    loss.backward()
                    norm = _grad_norm(params)
                finite = math.isfinite(value) and math.isfinite(norm)
                if finite:
                    history.largest_grad_norm = max(history.largest_grad_norm, norm)
                if skip_nonfinite and not finite:
                    history.nonfinite_skips, skipped = history.nonfinite_skips + 1, "nonfinite"
                elif not finite and on_nonfinite == "raise":
                    what = "loss" if not math.isfinite(value) else "gradient norm"
                    raise FloatingPointError(f"training {what} became {value if what == 'loss' else norm} (lr={lr} too large?)")
                else:
                    if not math.isfinite(value):
                        loss.backward()
                    if max_norm is not None and norm > max_norm:
                        nn.utils.clip_grad_norm_(params, max_norm)
                        history.clipped_steps, clipped = history.clipped_steps + 1, True
                    opt.step()
                    if finite:
                        accepted.append(value)
            if callback is not None:
                callback(StepRecord(step, epoch, value, norm, len(xb), clipped, skipped))
            step += 1
        history.seconds.append(time.perf_counter() - start)
        history.loss.append(total / rows if rows else math.nan)
        if eval_data is not None:
            history.test_accuracy.append(accuracy(model, *eval_data))
    opt.zero_grad(set_to_none=True)
    model.eval()
    return history


def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """Predicted class of each row of ``x``, computed in eval mode without gradients.

    Taught in chapter 1.
    """
    check_model("model", model)
    check_int("batch_size", batch_size, low=1)
    with eval_mode(model):
        with torch.no_grad():
            return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows of ``x`` that ``model`` classifies as ``y``.

    Taught in chapter 1.
    """
    _check_xy(model, x, y)
    return (predict(model, x) == y).float().mean().item()


def loss_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of the mean cross-entropy w.r.t. all parameters, flattened to one vector.

    The parameters' ``.grad`` and the model's mode are left as they were.
    Taught in chapter 2.
    """
    _check_xy(model, x, y)
    params = [p for p in model.parameters() if p.requires_grad]
    loss = nn.functional.cross_entropy(model(x), y)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]).detach()


def gradient_noise(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, samples: int = 32, seed: int = 0
) -> float:
    """Mean squared distance between mini-batch gradients and the full-batch gradient (their variance).

    Taught in chapter 2.
    """
    _check_xy(model, x, y)
    check_int("batch_size", batch_size, low=1, high=x.shape[0])
    check_int("samples", samples, low=1)
    generator = random_stream(seed, "train.gradient_noise")
    full = loss_gradient(model, x, y)
    total = 0.0
    for _ in range(samples):
        index = torch.randperm(x.shape[0], generator=generator)[:batch_size]
        total += (loss_gradient(model, x[index], y[index]) - full).pow(2).sum().item()
    return total / samples
