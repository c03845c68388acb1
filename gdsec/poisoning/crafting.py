"""Crafted poison (Biggio-style): gradient ascent on the victim's validation loss, through training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call

from gdsec.streams import random_stream
from gdsec.validation import (
    check_int,
    check_labels,
    check_model,
    check_number,
    check_unit_tensor,
)

__all__ = ["Ascent", "PoisonResult", "craft_poison", "unrolled_validation_loss"]


@dataclass(frozen=True)
class Ascent:
    """The poison's ascent schedule: ``steps`` steps, step ``t`` of length ``step_size * decay**t`` (L2).

    Taught in chapter 3.
    """

    steps: int = 30
    step_size: float = 0.5
    decay: float = 0.8

    def __post_init__(self) -> None:
        check_int("steps", self.steps, low=0)
        check_number("step_size", self.step_size, low=0.0, low_open=True)
        check_number("decay", self.decay, low=0.0, high=1.0, low_open=True)

    def bound(self) -> float:
        """How far (L2) a point can travel over the whole ascent: ``step_size * sum(decay**t)``.

        Taught in chapter 3.
        """
        return self.step_size * sum(self.decay**t for t in range(self.steps))


class PoisonResult(NamedTuple):
    """Crafted poison: the best points and their labels, their path over the ascent, and the objective.

    Taught in chapter 3.
    """

    x_poison: torch.Tensor
    y_poison: torch.Tensor
    path: torch.Tensor
    val_loss: list[float]


def unrolled_validation_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    *,
    lr: float,
    epochs: int,
    weight_decay: float,
) -> torch.Tensor:
    """Validation loss after ``epochs`` full-batch SGD steps from ``model``'s weights, differentiable in ``x``.

    The victim's training written as a differentiable program: autograd can then take the gradient
    of the final validation loss with respect to the training inputs (the poison). Memory grows
    with ``epochs``.

    Taught in chapter 3.
    """
    params = {name: p.detach().clone().requires_grad_(True) for name, p in model.named_parameters()}
    for _ in range(epochs):
        loss = nn.functional.cross_entropy(functional_call(model, params, (x,)), y)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        params = {
            name: p - lr * (g + weight_decay * p)
            for (name, p), g in zip(params.items(), grads, strict=True)
        }
    return nn.functional.cross_entropy(functional_call(model, params, (x_val,)), y_val)


def craft_poison(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    *,
    n_points: int,
    n_classes: int,
    lr: float,
    epochs: int,
    weight_decay: float = 0.0,
    ascent: Ascent = Ascent(),
    seed: int = 0,
) -> PoisonResult:
    """Biggio-style poisoning: gradient ascent on the validation loss through (unrolled) training.

    The victim trains a fresh copy of ``model`` (same initial weights) on ``x_train`` plus the poison
    with full-batch SGD (``lr``, ``epochs``, ``weight_decay``), as ``gdsec.train.train`` does with
    ``batch_size=None``. The ``n_points`` poison rows start as copies of random training rows with
    flipped labels; step t of the ``ascent`` moves every point by ``step_size * decay**t`` (L2) along the gradient
    of the victim's validation loss with respect to the point, then clips it to [0, 1]. The labels stay
    fixed. ``path`` holds the points after every step, ``val_loss`` the objective at each of them, and
    ``x_poison`` the points where the objective was highest.

    Taught in chapter 3.
    """
    check_model("model", model)
    check_unit_tensor("x_train", x_train, min_dim=2)
    check_unit_tensor("x_val", x_val, min_dim=2)
    check_int("n_classes", n_classes, low=2)
    check_labels("y_train", y_train, n=x_train.shape[0], n_classes=n_classes)
    check_labels("y_val", y_val, n=x_val.shape[0], n_classes=n_classes)
    check_int("n_points", n_points, low=1, high=x_train.shape[0])
    check_number("lr", lr, low=0.0, low_open=True)
    check_int("epochs", epochs, low=1)
    check_number("weight_decay", weight_decay, low=0.0)
    if not isinstance(ascent, Ascent):
        raise ValueError(f"ascent must be a poisoning.Ascent, got {type(ascent).__name__}")
    steps, step_size, decay = ascent.steps, ascent.step_size, ascent.decay
    generator = random_stream(seed, "poisoning.craft_poison")
    rows = torch.randperm(x_train.shape[0], generator=generator)[:n_points]
    shift = torch.randint(1, n_classes, (n_points,), generator=generator)
    y_poison = (y_train[rows] + shift) % n_classes
    point = x_train[rows].clone()
    path, objective = [point.clone()], []
    grad_state = [p.grad for p in model.parameters()]
    for step in range(steps + 1):
        poison = point.clone().requires_grad_(True)
        x_all = torch.cat([x_train, poison])
        y_all = torch.cat([y_train, y_poison])
        loss = unrolled_validation_loss(
            model, x_all, y_all, x_val, y_val, lr=lr, epochs=epochs, weight_decay=weight_decay
        )
        objective.append(loss.item())
        if step == steps:
            break
        (grad,) = torch.autograd.grad(loss, poison)
        norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12).reshape(-1, *([1] * (grad.dim() - 1)))
        point = (point + step_size * decay**step * grad / norms).clamp(0.0, 1.0).detach()
        path.append(point.clone())
    for p, g in zip(model.parameters(), grad_state, strict=True):
        p.grad = g
    best = max(range(len(objective)), key=objective.__getitem__)
    return PoisonResult(path[best].clone(), y_poison, torch.stack(path), objective)
