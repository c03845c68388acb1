"""Gradient matching (Witches' Brew): correctly labelled poison whose gradient points at the attacker's step."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call

from gdsec.validation import check_int, check_labels, check_model, check_number, check_unit_tensor

__all__ = ["GradientMatch", "match_gradient"]


class GradientMatch(NamedTuple):
    """Matched poison: the perturbed rows (labels unchanged) and the cosine before each ascent step.

    Taught in chapter 3.
    """

    x_poison: torch.Tensor
    cosine: list[float]


def match_gradient(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_target: torch.Tensor,
    y_target: torch.Tensor,
    *,
    eps: float,
    steps: int = 100,
    lr: float = 0.05,
) -> GradientMatch:
    """Perturb ``x`` (labels ``y`` kept) so its training gradient points at the step making ``x_target`` a ``y_target``.

    At ``model``'s weights ``w``, Adam (learning rate ``lr``, ``steps`` steps, from zero) maximises
    the cosine between the gradient of the summed loss of ``clamp(x + delta, 0, 1)`` with labels
    ``y`` and the gradient of the summed loss of ``x_target`` with the attacker's labels
    ``y_target``, keeping every ``|delta| <= eps``. Every later descent step that visits the rows
    then takes part of the attacker's step. Deterministic; ``model`` and the inputs are untouched.

    Taught in chapter 3.
    """
    check_model("model", model)
    check_unit_tensor("x", x, min_dim=2)
    check_labels("y", y, n=x.shape[0])
    check_unit_tensor("x_target", x_target, min_dim=2)
    check_labels("y_target", y_target, n=x_target.shape[0])
    if x_target.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"x_target must have x's row shape {tuple(x.shape[1:])}, got {tuple(x_target.shape[1:])}"
        )
    check_number("eps", eps, low=0.0, low_open=True)
    check_int("steps", steps, low=1)
    check_number("lr", lr, low=0.0, low_open=True)
    weights = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}

    def weight_gradient(inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, weights, (inputs,))
        loss = nn.functional.cross_entropy(logits, labels, reduction="sum")
        grads = torch.autograd.grad(loss, list(weights.values()), create_graph=True)
        return torch.cat([g.flatten() for g in grads])

    wanted = weight_gradient(x_target, y_target).detach()
    delta = torch.zeros_like(x, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=lr)
    cosines = []
    for _ in range(steps):
        poisoned = weight_gradient((x + delta).clamp(0, 1), y)
        cosine = nn.functional.cosine_similarity(poisoned, wanted, dim=0)
        optimizer.zero_grad()
        (1 - cosine).backward()
        optimizer.step()
        with torch.no_grad():
            delta.clamp_(-eps, eps)
        cosines.append(cosine.item())
    return GradientMatch((x + delta.detach()).clamp(0, 1), cosines)
