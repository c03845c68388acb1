"""What a federated client shares: the gradient of its batch, and the checks every leakage function uses."""

from __future__ import annotations

import torch
from torch import nn

from gdsec.models import eval_mode
from gdsec.validation import check_labels, check_model, check_unit_tensor

__all__ = ["check_param_grads", "check_inputs", "client_gradients", "trainable"]


def trainable(model: nn.Module) -> list[torch.Tensor]:
    """The parameters that a client's gradient covers (those requiring grad), in model order.

    Used in chapter 9.
    """
    return [p for p in model.parameters() if p.requires_grad]


def check_param_grads(name: str, grads: object, model: nn.Module) -> list[torch.Tensor]:
    """Return ``grads`` as a list if it holds one finite tensor per trainable parameter of ``model``.

    Used in chapter 9.
    """
    params = trainable(model)
    if not isinstance(grads, list | tuple) or not all(isinstance(g, torch.Tensor) for g in grads):
        raise ValueError(
            f"{name} must be a list of tensors, one per trainable parameter of the model"
        )
    if len(grads) != len(params):
        raise ValueError(
            f"{name} must hold {len(params)} tensors (one per trainable parameter), got {len(grads)}"
        )
    for i, (g, p) in enumerate(zip(grads, params, strict=True)):
        if g.shape != p.shape:
            raise ValueError(f"{name}[{i}] must have shape {tuple(p.shape)}, got {tuple(g.shape)}")
        if not g.is_floating_point() or not torch.isfinite(g).all():
            raise ValueError(f"{name}[{i}] must be a finite floating-point tensor")
    return list(grads)


def check_inputs(model: nn.Module, x: object, y: object) -> None:
    """Raise ``ValueError`` unless ``model`` is a module, ``x`` a batch in [0, 1] and ``y`` its labels.

    Used in chapter 9.
    """
    check_model("model", model)
    check_unit_tensor("x", x, min_dim=2)
    check_labels("y", y, n=x.shape[0])  # type: ignore[union-attr]


def client_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """The gradient a federated client shares: mean cross-entropy on (x, y), one tensor per parameter.

    The model's mode and the parameters' ``.grad`` are left as they were.
    Taught in chapter 9.
    """
    check_inputs(model, x, y)
    with eval_mode(model):
        loss = nn.functional.cross_entropy(model(x), y)
        return [g.detach().clone() for g in torch.autograd.grad(loss, trainable(model))]
