"""What a trained model does: predictions, accuracy, the loss gradient and its mini-batch noise."""

from __future__ import annotations

import torch
from torch import nn

from gdsec.models import eval_mode
from gdsec.streams import random_stream
from gdsec.validation import check_batch, check_int, check_labels, check_model

__all__ = ["accuracy", "check_xy", "gradient_noise", "loss_gradient", "predict"]


def check_xy(model: nn.Module, x: object, y: object, *, finite: bool = True) -> None:
    """Validate a model and a batch (x, y) of inputs and labels; ``finite=False`` allows NaN/Inf in x.

    Used in chapters 1-10.
    """
    check_model("model", model)
    if not finite and isinstance(x, torch.Tensor) and x.is_floating_point():
        check_batch("x", torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0))
    else:
        check_batch("x", x)
    check_labels("y", y, n=x.shape[0])  # type: ignore[union-attr]


def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """Predicted class of each row of ``x``, computed in eval mode without gradients.

    Taught in chapter 1.
    """
    check_model("model", model)
    check_int("batch_size", batch_size, low=1)
    with eval_mode(model):
        with torch.no_grad():
            return torch.cat(
                [model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]
            )


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows of ``x`` that ``model`` classifies as ``y``.

    Taught in chapter 1.
    """
    check_xy(model, x, y)
    return (predict(model, x) == y).float().mean().item()


def loss_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of the mean cross-entropy w.r.t. all parameters, flattened to one vector.

    The parameters' ``.grad`` and the model's mode are left as they were.
    Taught in chapter 2.
    """
    check_xy(model, x, y)
    params = [p for p in model.parameters() if p.requires_grad]
    loss = nn.functional.cross_entropy(model(x), y)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]).detach()


def gradient_noise(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    draws: int = 32,
    seed: int = 0,
) -> float:
    """Mean squared distance between mini-batch gradients and the full-batch gradient (their variance).

    Averaged over ``draws`` random mini-batches of ``batch_size`` rows.

    Taught in chapter 2.
    """
    check_xy(model, x, y)
    check_int("batch_size", batch_size, low=1, high=x.shape[0])
    check_int("draws", draws, low=1)
    generator = random_stream(seed, "train.gradient_noise")
    full = loss_gradient(model, x, y)
    total = 0.0
    for _ in range(draws):
        index = torch.randperm(x.shape[0], generator=generator)[:batch_size]
        total += (loss_gradient(model, x[index], y[index]) - full).pow(2).sum().item()
    return total / draws
