"""Certified lower bounds on robust accuracy: interval bound propagation (IBP).

An attack that fails proves nothing: a stronger attack might succeed. IBP proves a row robust. It
pushes the whole input box ``[max(x - eps, 0), min(x + eps, 1)]`` through the network one layer at a
time, keeping a lower and an upper bound for every unit (Gowal et al. 2018; Kolter & Madry's
tutorial, chapter 4). An affine layer maps the box's centre exactly and its radius through ``|W|``;
a monotone layer (ReLU, tanh, sigmoid, max- or average-pooling, flatten) maps the two ends. The
last linear layer is folded into the margin ("elision"): ``z_y - z_k = (W_y - W_k) h + b_y - b_k``
is bounded from the last hidden box directly, which is tighter than subtracting two logit bounds.

So, per row: certified (IBP) <= truly robust <= survives the attacks. Every bound holds for the
model in eval mode; none of the supported layers depends on the mode, so the mode is not touched.

* :func:`interval_bounds` - lower and upper bounds on every logit over the input box.
* :func:`margin_lower_bound` - a lower bound on ``z_y - max_{k != y} z_k`` (elision).
* :func:`certified`, :func:`certified_accuracy` - rows whose margin bound is positive.
* :func:`ibp_train` - train on the IBP worst case, so that the bounds become tight enough to certify.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gdsec.env import progress as progress_bar
from gdsec.streams import random_stream
from gdsec.validation import (
    check_int,
    check_labels,
    check_model,
    check_norm,
    check_number,
    check_unit_tensor,
)

__all__ = [
    "affine_box",
    "certified",
    "certified_accuracy",
    "ibp_train",
    "interval_bounds",
    "margin_lower_bound",
]

Box = tuple[torch.Tensor, torch.Tensor]

_AFFINE = (nn.Linear, nn.Conv2d)
#: Layers f with f(l) <= f(z) <= f(u) whenever l <= z <= u: the box maps through its two ends.
_MONOTONE = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.MaxPool2d, nn.AvgPool2d, nn.Flatten, nn.Identity)
_SUPPORTED = (
    "Linear, Conv2d, ReLU, Tanh, Sigmoid, MaxPool2d, AvgPool2d, Flatten, Identity "
    "(nested nn.Sequential allowed)"
)


def _layers(model: nn.Module) -> list[nn.Module]:
    """The layers of ``model`` in order (nested ``nn.Sequential`` flattened); ValueError on others."""
    if isinstance(model, nn.Sequential) and type(model).forward is nn.Sequential.forward:
        return [layer for child in model for layer in _layers(child)]
    if isinstance(model, _AFFINE + _MONOTONE):
        return [model]
    raise ValueError(
        f"model contains a {type(model).__name__} layer, which interval bounds do not support; supported: {_SUPPORTED}"
    )


def _check(
    model: object, x: object, eps: object, norm: object
) -> tuple[list[nn.Module], float, str]:
    """Validate the arguments shared by every bound; return (layers, eps, norm)."""
    layers = _layers(check_model("model", model))
    check_unit_tensor("x", x, min_dim=2)
    return layers, check_number("eps", eps, low=0.0), check_norm("norm", norm)


def affine_box(layer: nn.Module, mid: torch.Tensor, rad: torch.Tensor) -> Box:
    """Image of the box (centre ``mid``, radius ``rad``) under an affine layer, as (centre, radius).

    The centre maps exactly; the radius maps through ``|W|`` (no bias: a shift does not widen a box).
    Taught in chapter 6.
    """
    if isinstance(layer, nn.Linear):
        return layer(mid), nn.functional.linear(rad, layer.weight.abs())
    return layer(mid), layer._conv_forward(rad, layer.weight.abs(), None)


def _l2_radius(layer: nn.Module, x: torch.Tensor, eps: float) -> torch.Tensor | None:
    """``eps * ||row||_2`` of the affine ``layer`` per output unit (the exact L2-ball radius), if known."""
    if isinstance(layer, nn.Linear):
        return eps * layer.weight.pow(2).sum(1).sqrt().expand(x.shape[0], -1)
    if layer.padding_mode != "zeros":
        return None
    return eps * layer._conv_forward(torch.ones_like(x), layer.weight.pow(2), None).sqrt()


def _tighten_l2(layer: nn.Module, x: torch.Tensor, eps: float, box: Box) -> Box:
    """Intersect an affine layer's box bound with its exact bound over the L2 ball (both are sound)."""
    radius = _l2_radius(layer, x, eps)
    if radius is None:
        return box
    centre = layer(x)
    return torch.maximum(box[0], centre - radius), torch.minimum(box[1], centre + radius)


def _propagate(layers: list[nn.Module], x: torch.Tensor, eps: float, norm: str) -> Box:
    """Lower and upper bounds on the output of ``layers`` over the eps-ball around ``x`` within [0, 1]."""
    lower, upper = (x - eps).clamp(0.0, 1.0), (x + eps).clamp(0.0, 1.0)
    at_input = True  # nothing but Flatten/Identity so far: the L2 ball can be used exactly
    for layer in layers:
        if isinstance(layer, _AFFINE):
            mid, rad = affine_box(layer, (upper + lower) / 2, (upper - lower) / 2)
            lower, upper = mid - rad, mid + rad
            if norm == "2" and at_input:
                seen = x.reshape(x.shape[0], *_input_shape(layer, x))
                lower, upper = _tighten_l2(layer, seen, eps, (lower, upper))
            at_input = False
        else:
            lower, upper = layer(lower), layer(upper)
            at_input = at_input and isinstance(layer, nn.Flatten | nn.Identity)
    return lower, upper


def _input_shape(layer: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    """The shape (without the batch axis) in which ``layer`` reads ``x`` (flattened for Linear)."""
    return (x[0].numel(),) if isinstance(layer, nn.Linear) else tuple(x.shape[1:])


def interval_bounds(model: nn.Module, x: torch.Tensor, eps: float, *, norm: str = "inf") -> Box:
    """(lower, upper) logits bounding ``model`` on every input within ``eps`` of ``x`` and in [0, 1].

    ``norm`` is "inf" (the box) or "2" (the L2 ball, bounded by its box and, at the first affine
    layer, by the exact ball). Raises ``ValueError`` naming any unsupported layer.
    Taught in chapter 6.
    """
    layers, eps, norm = _check(model, x, eps, norm)
    with torch.no_grad():
        lower, upper = _propagate(layers, x.detach(), eps, norm)
    return lower.detach(), upper.detach()


def _margins(
    layers: list[nn.Module], x: torch.Tensor, y: torch.Tensor, eps: float, norm: str
) -> torch.Tensor:
    """(N, K) lower bounds on ``z_y - z_k`` (``+inf`` at k = y), folding the last Linear layer in."""
    last = layers[-1]
    if not isinstance(last, nn.Linear):
        lower, upper = _propagate(layers, x, eps, norm)
        bound = lower.gather(1, y[:, None]) - upper
    else:
        lower, upper = _propagate(layers[:-1], x, eps, norm)
        mid, rad = (upper + lower) / 2, (upper - lower) / 2
        rows = last.weight[y][:, None, :] - last.weight[None, :, :]  # (N, K, hidden): W_y - W_k
        offset = 0.0 if last.bias is None else last.bias[y][:, None] - last.bias[None, :]
        bound = (
            (rows @ mid[:, :, None]).squeeze(2) - (rows.abs() @ rad[:, :, None]).squeeze(2) + offset
        )
        if norm == "2" and all(
            isinstance(layer, nn.Flatten | nn.Identity) for layer in layers[:-1]
        ):
            flat = x.reshape(x.shape[0], -1)
            exact = (rows @ flat[:, :, None]).squeeze(2) + offset - eps * rows.norm(dim=2)
            bound = torch.maximum(bound, exact)
    return bound.scatter(1, y[:, None], math.inf)


def margin_lower_bound(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, norm: str = "inf"
) -> torch.Tensor:
    """Per row, a lower bound on the margin ``z_y - max_{k != y} z_k`` over the ``eps``-ball, shaped (N,).

    Uses the elision of the last layer when the model ends with ``nn.Linear``, else the logit bounds.
    Taught in chapter 6.
    """
    layers, eps, norm = _check(model, x, eps, norm)
    with torch.no_grad():
        n_classes = interval_bounds(model, x[:1], 0.0)[0].shape[1]
        check_labels("y", y, n=x.shape[0], n_classes=n_classes)
        return _margins(layers, x.detach(), y, eps, norm).amin(1).detach()


def certified(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, norm: str = "inf"
) -> torch.Tensor:
    """A bool per row: True when IBP proves that no input in the ``eps``-ball changes the class from ``y``.

    Taught in chapter 6.
    """
    return margin_lower_bound(model, x, y, eps, norm=norm) > 0


def certified_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, norm: str = "inf"
) -> float:
    """Fraction of rows certified robust at ``eps``: a lower bound on the true robust accuracy.

    Taught in chapter 6.
    """
    return certified(model, x, y, eps, norm=norm).float().mean().item()


def _ibp_loss(
    layers: list[nn.Module], x: torch.Tensor, y: torch.Tensor, eps: float, kappa: float
) -> torch.Tensor:
    """``kappa * CE(clean) + (1 - kappa) * CE(worst-case logits)``, the worst case being ``-margin bounds``."""
    clean = nn.functional.cross_entropy(
        nn.Sequential(*layers)(x), y
    )  # the plain forward: no interval work
    worst = -_margins(layers, x, y, eps, "inf").scatter(1, y[:, None], 0.0)
    return kappa * clean + (1 - kappa) * nn.functional.cross_entropy(worst, y)


def ibp_train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    epochs: int = 60,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = False,
) -> list[float]:
    """Train ``model`` in place on the IBP bound at L-infinity ``eps`` (Gowal et al. 2018); return epoch losses.

    Adam on ``kappa * CE(clean) + (1 - kappa) * CE(worst case)``; during the first half of the
    epochs ``eps`` ramps up from 0 and ``kappa`` falls from 1 to 0.5, then both stay. Mini-batches
    of ``batch_size`` rows (all rows if fewer), shuffled by ``seed``. The mode is left as it was.
    Taught in chapter 6.
    """
    layers = _layers(check_model("model", model))
    check_unit_tensor("x", x, min_dim=2)
    eps = check_number("eps", eps, low=0.0)
    epochs = check_int("epochs", epochs, low=1)
    lr = check_number("lr", lr, low=0.0, low_open=True)
    batch_size = min(check_int("batch_size", batch_size, low=1), x.shape[0])
    generator = random_stream(seed, "verify.ibp_train.order")
    n_classes = interval_bounds(model, x[:1], 0.0)[0].shape[1]
    check_labels("y", y, n=x.shape[0], n_classes=n_classes)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    ramp = max(1, epochs // 2)
    losses = []
    for epoch in progress_bar(range(epochs), desc="epochs", leave=False, disable=not progress):
        share = min(1.0, (epoch + 1) / ramp)
        order = torch.randperm(x.shape[0], generator=generator)
        total = 0.0
        for begin in range(0, x.shape[0], batch_size):
            index = order[begin : begin + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = _ibp_loss(layers, x[index].detach(), y[index], share * eps, 1.0 - 0.5 * share)
            loss.backward()
            opt.step()
            total += loss.item() * len(index)
        losses.append(total / x.shape[0])
    opt.zero_grad(set_to_none=True)
    return losses
