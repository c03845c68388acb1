"""Reconstruction attacks: rebuild a client's inputs and labels from the gradient it shares.

Deep Leakage from Gradients (Zhu et al. 2019) optimises dummy inputs until their gradient matches
the shared one; label inference from the last layer (iDLG, Zhao et al. 2020) removes the labels
from the unknowns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from gdsec.leakage.gradients import check_param_grads, trainable
from gdsec.models import eval_mode
from gdsec.streams import random_stream
from gdsec.validation import (
    check_choice,
    check_int,
    check_labels,
    check_model,
    check_number,
    check_unit_tensor,
)

__all__ = [
    "DISTANCES",
    "dlg",
    "gradient_distance",
    "infer_labels",
    "match_reconstructions",
    "reconstruction_errors",
]

#: Gradient-matching distances: squared L2 as in DLG, or 1 - cosine similarity (Geiping et al. 2020).
DISTANCES = ("l2", "cosine")


def _last_layer(
    grads: Sequence[torch.Tensor], n_classes: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The last layer's weight gradient (n_classes, k) and its bias gradient (n_classes,) if present."""
    bias = grads[-1] if grads[-1].dim() == 1 and grads[-1].shape[0] == n_classes else None
    for g in reversed(grads):
        if g.dim() == 2 and g.shape[0] == n_classes:
            return g, bias
    raise ValueError(
        f"target_grads must contain a last-layer weight gradient of shape ({n_classes}, k)"
    )


def infer_labels(
    target_grads: Sequence[torch.Tensor], *, n_classes: int, batch_size: int = 1
) -> torch.Tensor:
    """Labels read off the last layer's gradient (iDLG): the classes whose logit gradient is negative.

    With cross-entropy the gradient on logit c is softmax_c - 1[y = c] (averaged over the batch), so
    only the true classes can be negative. We use the bias gradient when the last layer has one, and
    otherwise the row sums of its weight gradient (exact for non-negative activations). Exact for a
    batch of one; for larger batches exact when the labels are distinct, a heuristic otherwise.
    Taught in chapter 9.
    """
    check_int("n_classes", n_classes, low=2)
    check_int("batch_size", batch_size, low=1)
    if not isinstance(target_grads, list | tuple) or not target_grads:
        raise ValueError("target_grads must be a non-empty list of tensors")
    weight, bias = _last_layer(target_grads, n_classes)
    score = (bias if bias is not None else weight.sum(dim=1)).detach().double()
    order = torch.argsort(score)  # most negative first
    present = [int(c) for c in order if score[c] < 0][:batch_size] or [int(order[0])]
    labels = [present[i % len(present)] for i in range(batch_size)]
    return torch.tensor(sorted(labels), dtype=torch.long)


def gradient_distance(
    grads: Sequence[torch.Tensor], target: Sequence[torch.Tensor], *, distance: str = "l2"
) -> torch.Tensor:
    """How far ``grads`` is from ``target``: summed squared difference, or 1 - cosine similarity.

    Taught in chapter 9.
    """
    check_choice("distance", distance, DISTANCES)
    if distance == "l2":
        return sum(((g - t) ** 2).sum() for g, t in zip(grads, target, strict=True))
    dot = sum((g * t).sum() for g, t in zip(grads, target, strict=True))
    norm_g = torch.sqrt(sum((g * g).sum() for g in grads))
    norm_t = torch.sqrt(sum((t * t).sum() for t in target))
    return 1 - dot / (norm_g * norm_t + 1e-12)


def _check_shape(x_shape: object) -> tuple[int, ...]:
    if not isinstance(x_shape, Sequence) or isinstance(x_shape, str) or len(x_shape) < 2:
        raise ValueError(
            f"x_shape must be a shape (batch, ...) with at least 2 entries, got {x_shape!r}"
        )
    for size in x_shape:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"x_shape must hold positive integers, got {tuple(x_shape)!r}")
    return tuple(x_shape)


def dlg(
    model: nn.Module,
    target_grads: Sequence[torch.Tensor],
    x_shape: Sequence[int],
    *,
    n_classes: int,
    steps: int = 100,
    lr: float = 1.0,
    seed: int = 0,
    labels: torch.Tensor | None = None,
    distance: str = "l2",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deep Leakage from Gradients: inputs (in [0, 1]) and labels whose gradient matches ``target_grads``.

    Labels come from the last layer (iDLG) unless ``labels`` is given; the inputs are optimised with
    L-BFGS (``steps`` iterations, step size ``lr``) from a seeded random start, through a sigmoid so
    they stay in [0, 1]. Works best on smooth (sigmoid, tanh) networks, early in training and on
    batches of one or two: see the chapter for where it fails. ``target_grads``, the model's
    parameters, their ``.grad`` and the model's mode are left untouched.
    Taught in chapter 9.
    """
    check_model("model", model)
    shape = _check_shape(x_shape)
    check_int("n_classes", n_classes, low=2)
    check_int("steps", steps, low=1)
    check_number("lr", lr, low=0.0, low_open=True)
    generator = random_stream(seed, "leakage.dlg.start")
    check_choice("distance", distance, DISTANCES)
    target = [g.detach() for g in check_param_grads("target_grads", target_grads, model)]
    if labels is None:
        y_rec = infer_labels(target, n_classes=n_classes, batch_size=shape[0])
    else:
        y_rec = check_labels("labels", labels, n=shape[0], n_classes=n_classes).clone()
    params = trainable(model)
    latent = torch.randn(shape, generator=generator).requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [latent], lr=lr, max_iter=steps, history_size=100, line_search_fn="strong_wolfe"
    )
    best = {"distance": math.inf, "x": torch.sigmoid(latent).detach().clone()}

    def closure() -> torch.Tensor:
        dummy = torch.sigmoid(latent)
        loss = nn.functional.cross_entropy(model(dummy), y_rec)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        gap = gradient_distance(grads, target, distance=distance)
        (latent.grad,) = torch.autograd.grad(gap, [latent])
        if torch.isfinite(gap) and gap.item() < best["distance"]:
            best["distance"], best["x"] = gap.item(), dummy.detach().clone()
        return gap.detach()

    with eval_mode(model):
        optimizer.step(closure)
    return best["x"].clamp(0, 1).to(torch.float32), y_rec


def match_reconstructions(x_rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``x_rec`` reordered so that row i is the reconstruction closest to original i (optimal matching).

    DLG rebuilds a batch in no particular order; the matching minimises the total squared error.
    Taught in chapter 9.
    """
    for name, value in (("x_rec", x_rec), ("x", x)):
        check_unit_tensor(name, value, min_dim=2)
    if x_rec.shape != x.shape:
        raise ValueError(
            f"x_rec must have the shape of x {tuple(x.shape)}, got {tuple(x_rec.shape)}"
        )
    cost = ((x_rec[:, None] - x[None]) ** 2).flatten(2).mean(2).double()
    rows, cols = linear_sum_assignment(cost.numpy())
    order = torch.empty(x.shape[0], dtype=torch.long)
    order[torch.as_tensor(cols)] = torch.as_tensor(rows)
    return x_rec[order].clone()


def reconstruction_errors(x_rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error after matching each reconstruction to one original (any order).

    Taught in chapter 9.
    """
    matched = match_reconstructions(x_rec, x)
    return ((matched - x) ** 2).flatten(1).mean(1).double()
