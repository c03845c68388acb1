"""Training loops (full-batch, SGD, mini-batch) with any of the course's optimizers, and evaluation."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from gdsec.env import progress as progress_bar
from gdsec.models import eval_mode
from gdsec.optim import OPTIMIZERS, torch_optimizer
from gdsec.validation import check_choice, check_int, check_labels, check_model, check_number

__all__ = ["History", "accuracy", "gradient_noise", "loss_gradient", "predict", "train"]

#: ``adversary(model, xb, yb, seed=...) -> xb_adv``: called once per batch with a fresh seed.
Adversary = Callable[..., torch.Tensor]


@dataclass
class History:
    """What a training run measured: mean loss and wall seconds per epoch, loss per step."""

    loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)

    @property
    def final_loss(self) -> float:
        """Mean training loss of the last epoch."""
        return self.loss[-1]


def _check_xy(model: nn.Module, x: object, y: object) -> None:
    check_model("model", model)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise ValueError("x must be a floating-point tensor with a batch axis, shape (N, ...)")
    if x.shape[0] == 0:
        raise ValueError("x must hold at least one row")
    if not torch.isfinite(x).all():
        raise ValueError("x must not contain NaN or Inf")
    check_labels("y", y, n=x.shape[0])


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
    **hyper: float,
) -> History:
    """Train ``model`` in place on (x, y) with cross-entropy; return the measured ``History``.

    ``batch_size=None`` is full-batch gradient descent, ``1`` is stochastic gradient descent, anything
    between is mini-batch. ``optimizer`` is one of ``gdsec.optim.OPTIMIZERS`` (hyper-parameters such as
    ``beta`` or ``weight_decay`` pass through). ``adversary(model, xb, yb, seed=seed * 1_000_000 + step)``,
    if given, replaces each batch by its adversarial version before the step (adversarial training);
    ``step`` counts batches from 0 over the whole run, so each batch gets fresh, reproducible noise.
    The model is left in eval mode.
    """
    _check_xy(model, x, y)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_number("lr", lr, low=0.0, low_open=True)
    check_int("epochs", epochs, low=1)
    n = x.shape[0]
    if batch_size is not None:
        check_int("batch_size", batch_size, low=1, high=n)
    generator = torch.Generator().manual_seed(check_int("seed", seed, low=0))
    opt = torch_optimizer(optimizer, model.parameters(), lr=lr, **hyper)
    size = n if batch_size is None else batch_size
    history = History()
    step = 0
    for _ in progress_bar(range(epochs), desc="epochs", leave=False, disable=not progress):
        start = time.perf_counter()
        order = torch.randperm(n, generator=generator) if size < n else torch.arange(n)
        total = 0.0
        for begin in range(0, n, size):
            index = order[begin : begin + size]
            xb, yb = x[index], y[index]
            if adversary is not None:
                xb = adversary(model, xb, yb, seed=seed * 1_000_000 + step)
            step += 1
            model.train()
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(xb), yb)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} (lr={lr} too large?)")
            loss.backward()
            opt.step()
            history.step_loss.append(loss.item())
            total += loss.item() * len(index)
        history.seconds.append(time.perf_counter() - start)
        history.loss.append(total / n)
        if eval_data is not None:
            history.test_accuracy.append(accuracy(model, *eval_data))
    opt.zero_grad(set_to_none=True)
    model.eval()
    return history


def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """Predicted class of each row of ``x``, computed in eval mode without gradients."""
    check_model("model", model)
    check_int("batch_size", batch_size, low=1)
    with eval_mode(model):
        with torch.no_grad():
            return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows of ``x`` that ``model`` classifies as ``y``."""
    _check_xy(model, x, y)
    return (predict(model, x) == y).float().mean().item()


def loss_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of the mean cross-entropy w.r.t. all parameters, flattened to one vector.

    The parameters' ``.grad`` and the model's mode are left as they were.
    """
    _check_xy(model, x, y)
    params = [p for p in model.parameters() if p.requires_grad]
    loss = nn.functional.cross_entropy(model(x), y)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]).detach()


def gradient_noise(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, samples: int = 32, seed: int = 0
) -> float:
    """Mean squared distance between mini-batch gradients and the full-batch gradient (their variance)."""
    _check_xy(model, x, y)
    check_int("batch_size", batch_size, low=1, high=x.shape[0])
    check_int("samples", samples, low=1)
    generator = torch.Generator().manual_seed(check_int("seed", seed, low=0))
    full = loss_gradient(model, x, y)
    total = 0.0
    for _ in range(samples):
        index = torch.randperm(x.shape[0], generator=generator)[:batch_size]
        total += (loss_gradient(model, x[index], y[index]) - full).pow(2).sum().item()
    return total / samples
