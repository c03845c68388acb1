"""Training-time attacks on the data (label flips, gradient-crafted poison, pixel-trigger backdoors)
and a detector that looks for the poisoned rows (spectral signatures or loss filtering).

Every function returns new tensors: inputs, labels and models are never modified.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call

from gdsec.models import eval_mode
from gdsec.validation import (
    check_choice,
    check_fraction,
    check_int,
    check_labels,
    check_model,
    check_number,
    check_unit_tensor,
)

__all__ = [
    "DETECT_METHODS",
    "Detection",
    "PoisonResult",
    "TRIGGER_SIZE",
    "add_backdoor",
    "apply_trigger",
    "attack_success_rate",
    "craft_poison",
    "detect_poison",
    "detection_quality",
    "flip_labels",
    "penultimate_features",
]

#: Side length (pixels) of the square trigger stamped in the bottom-right corner.
TRIGGER_SIZE = 2
DETECT_METHODS = ("spectral", "loss")


def _count(fraction: float, n: int) -> int:
    """Number of rows a fraction of ``n`` stands for: ``round(fraction * n)`` (Python rounding)."""
    return int(round(fraction * n))


def flip_labels(y: torch.Tensor, fraction: float, *, n_classes: int, seed: int = 0) -> torch.Tensor:
    """A copy of ``y`` with exactly ``round(fraction * N)`` labels changed, each to a different class."""
    check_int("n_classes", n_classes, low=2)
    check_labels("y", y, n_classes=n_classes)
    check_fraction("fraction", fraction)
    check_int("seed", seed, low=0)
    generator = torch.Generator().manual_seed(seed)
    k = _count(fraction, y.shape[0])
    rows = torch.randperm(y.shape[0], generator=generator)[:k]
    shift = torch.randint(1, n_classes, (k,), generator=generator)
    flipped = y.clone()
    flipped[rows] = (y[rows] + shift) % n_classes
    return flipped


def _image_view(x: torch.Tensor) -> torch.Tensor:
    """View ``x`` as (N, ..., H, W): images stay as they are, flat rows (N, d) with square d become (N, s, s)."""
    if x.dim() >= 3:
        return x
    side = math.isqrt(x.shape[1])
    if x.dim() != 2 or side * side != x.shape[1] or side < TRIGGER_SIZE + 1:
        raise ValueError(
            f"x must be images (N, ..., H, W) or flat square images (N, s*s), got shape {tuple(x.shape)}"
        )
    return x.reshape(x.shape[0], side, side)


def apply_trigger(x: torch.Tensor) -> torch.Tensor:
    """A copy of ``x`` with the backdoor trigger (a bright 2x2 square, bottom-right corner) stamped on."""
    check_unit_tensor("x", x, min_dim=2)
    stamped = x.clone()
    view = _image_view(stamped)
    if view.shape[-1] <= TRIGGER_SIZE or view.shape[-2] <= TRIGGER_SIZE:
        raise ValueError(f"x images must be larger than the {TRIGGER_SIZE}x{TRIGGER_SIZE} trigger")
    view[..., -TRIGGER_SIZE - 1 : -1, -TRIGGER_SIZE - 1 : -1] = 1.0
    return stamped


def add_backdoor(
    x: torch.Tensor, y: torch.Tensor, *, target: int, fraction: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stamp the trigger on ``round(fraction * N)`` rows not of class ``target`` and relabel them ``target``.

    Returns ``(x_poisoned, y_poisoned, index)``: copies of the data and the sorted poisoned row indices.
    """
    check_unit_tensor("x", x, min_dim=2)
    check_labels("y", y, n=x.shape[0])
    check_int("target", target, low=0)
    check_fraction("fraction", fraction)
    check_int("seed", seed, low=0)
    k = _count(fraction, x.shape[0])
    candidates = torch.nonzero(y != target).flatten()
    if k > len(candidates):
        raise ValueError(
            f"fraction must leave enough rows outside class {target}: asked for {k}, only {len(candidates)} exist"
        )
    generator = torch.Generator().manual_seed(seed)
    index = candidates[torch.randperm(len(candidates), generator=generator)[:k]].sort().values
    x_poisoned, y_poisoned = x.clone(), y.clone()
    if k:
        x_poisoned[index] = apply_trigger(x[index])
        y_poisoned[index] = target
    return x_poisoned, y_poisoned, index


def attack_success_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, target: int) -> float:
    """Fraction of inputs not of class ``target`` that the model sends to ``target`` once triggered."""
    from gdsec.train import predict

    check_model("model", model)
    check_unit_tensor("x", x, min_dim=2)
    check_labels("y", y, n=x.shape[0])
    keep = y != target
    if not keep.any():
        raise ValueError(f"y must contain rows outside the target class {target}")
    return (predict(model, apply_trigger(x[keep])) == target).float().mean().item()


class PoisonResult(NamedTuple):
    """Crafted poison: the best points and their labels, their path over the ascent, and the objective."""

    x_poison: torch.Tensor
    y_poison: torch.Tensor
    path: torch.Tensor
    val_loss: list[float]


def _unrolled_val_loss(
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
    """Validation loss after ``epochs`` full-batch SGD steps from ``model``'s weights, differentiable in ``x``."""
    params = {name: p.detach().clone().requires_grad_(True) for name, p in model.named_parameters()}
    for _ in range(epochs):
        loss = nn.functional.cross_entropy(functional_call(model, params, (x,)), y)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        params = {
            name: p - lr * (g + weight_decay * p) for (name, p), g in zip(params.items(), grads, strict=True)
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
    steps: int = 30,
    step_size: float = 0.5,
    decay: float = 0.8,
    seed: int = 0,
) -> PoisonResult:
    """Biggio-style poisoning: gradient ascent on the validation loss through (unrolled) training.

    The victim trains a fresh copy of ``model`` (same initial weights) on ``x_train`` plus the poison
    with full-batch SGD (``lr``, ``epochs``, ``weight_decay``), as ``gdsec.train.train`` does with
    ``batch_size=None``. The ``n_points`` poison rows start as copies of random training rows with
    flipped labels; ascent step t moves every point by ``step_size * decay**t`` (L2) along the gradient
    of the victim's validation loss with respect to the point, then clips it to [0, 1]. The labels stay
    fixed. ``path`` holds the points after every step, ``val_loss`` the objective at each of them, and
    ``x_poison`` the points where the objective was highest.
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
    check_int("steps", steps, low=0)
    check_number("step_size", step_size, low=0.0, low_open=True)
    check_number("decay", decay, low=0.0, high=1.0, low_open=True)
    check_int("seed", seed, low=0)
    generator = torch.Generator().manual_seed(seed)
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
        loss = _unrolled_val_loss(
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


class Detection(NamedTuple):
    """What a poison detector found: suspected row indices (sorted) and one suspicion score per row."""

    flagged: torch.Tensor
    scores: torch.Tensor


def penultimate_features(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """The inputs of the model's last ``nn.Linear`` layer (its learned representation), flattened per row."""
    check_model("model", model)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model must end in an nn.Linear layer to expose a representation")
    captured: list[torch.Tensor] = []
    handle = linears[-1].register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].detach()))
    try:
        with eval_mode(model), torch.no_grad():
            for i in range(0, x.shape[0], batch_size):
                model(x[i : i + batch_size])
    finally:
        handle.remove()
    return torch.cat(captured).flatten(1)


def _spectral_scores(features: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per class: squared projection on the top singular vector of the centred features, over the class median."""
    scores = torch.zeros(features.shape[0])
    for label in y.unique():
        rows = torch.nonzero(y == label).flatten()
        if len(rows) < 2:
            continue
        centred = features[rows] - features[rows].mean(0)
        top = torch.linalg.svd(centred.double(), full_matrices=False).Vh[0]
        projection = (centred.double() @ top).pow(2)
        scores[rows] = (projection / projection.median().clamp_min(1e-12)).float()
    return scores


def detect_poison(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    method: str = "spectral",
    expected_fraction: float = 0.05,
    removal: float = 1.5,
) -> Detection:
    """Flag the ``round(removal * expected_fraction * N)`` most suspicious training rows of a trained model.

    ``"spectral"`` (Tran et al. 2018): within each label, rows whose representation (input of the last
    linear layer) projects strongly on the top singular direction; scores are divided by the class
    median so that classes are comparable. ``"loss"``: rows with the highest cross-entropy under
    the model, e.g. a reference model the defender trained on a small trusted subset: a poisoned
    row (a triggered 3 labelled 0, a flipped label) looks wrong to it. Neither the model nor the data
    is modified.
    """
    check_model("model", model)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2 or x.shape[0] < 2:
        raise ValueError("x must be a floating-point tensor of at least two rows, shape (N, ...)")
    check_labels("y", y, n=x.shape[0])
    check_choice("method", method, DETECT_METHODS)
    check_number("expected_fraction", expected_fraction, low=0.0, high=1.0, low_open=True)
    check_number("removal", removal, low=0.0, low_open=True)
    if method == "spectral":
        scores = _spectral_scores(penultimate_features(model, x), y)
    else:
        with eval_mode(model):
            with torch.no_grad():
                scores = nn.functional.cross_entropy(model(x), y, reduction="none")
    k = min(x.shape[0], max(1, _count(removal * expected_fraction, x.shape[0])))
    flagged = torch.topk(scores, k).indices.sort().values
    return Detection(flagged, scores)


def detection_quality(flagged: torch.Tensor, poisoned: torch.Tensor) -> tuple[float, float]:
    """(precision, recall) of the flagged row indices against the truly poisoned ones."""
    flagged_set = set(flagged.tolist())
    truth = set(poisoned.tolist())
    hits = len(flagged_set & truth)
    precision = hits / len(flagged_set) if flagged_set else 0.0
    recall = hits / len(truth) if truth else 1.0
    return precision, recall


# moved from landscape


def _border_index(x: torch.Tensor) -> torch.Tensor:
    """Flat indices of the outermost pixels of an (N, C, H, W) image batch's first channel."""
    height, width = x.shape[-2], x.shape[-1]
    return torch.tensor([i for i in range(height * width) if i // width in (0, height - 1) or i % width in (0, width - 1)])


def plant_shortcut(x: torch.Tensor, y: torch.Tensor, *, pixels: int = 6, n_classes: int = 10, seed: int = 0) -> torch.Tensor:
    """A crafted copy of images ``x`` (N, 1, H, W) where each class's secret code (``pixels`` border
    pixels set to 1) is stamped on every row according to its label ``y``: a shortcut that descent
    prefers to the real features. Stamping wrong labels' codes at test time steers the model."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"x must be a floating-point image batch of shape (N, 1, H, W), got {getattr(x, 'shape', x)}")
    if x.shape[-1] < 3 or x.shape[-2] < 3:
        raise ValueError(f"x must have images of at least 3 x 3 pixels, got shape {tuple(x.shape)}")
    check_int("n_classes", n_classes, low=2)
    check_labels("y", y, n=x.shape[0], n_classes=n_classes)
    border = _border_index(x)
    check_int("pixels", pixels, low=1, high=len(border))
    generator = torch.Generator().manual_seed(check_int("seed", seed, low=0))
    codes = torch.stack([border[torch.randperm(len(border), generator=generator)[:pixels]] for _ in range(n_classes)])
    planted = x.detach().clone()
    flat = planted.reshape(x.shape[0], -1)
    flat[torch.arange(x.shape[0])[:, None], codes[y]] = 1.0
    return planted


def shuffle_border(x: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """A copy of images ``x`` (N, 1, H, W) whose outermost ring of pixels is taken from another, randomly
    chosen row: an ablation probe that keeps the pixel statistics but breaks any label code hidden there."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"x must be a floating-point image batch of shape (N, 1, H, W), got {getattr(x, 'shape', x)}")
    if x.shape[-1] < 3 or x.shape[-2] < 3:
        raise ValueError(f"x must have images of at least 3 x 3 pixels, got shape {tuple(x.shape)}")
    generator = torch.Generator().manual_seed(check_int("seed", seed, low=0))
    border = _border_index(x)
    source = torch.randperm(x.shape[0], generator=generator)
    shuffled = x.detach().clone()
    flat = shuffled.reshape(x.shape[0], -1)
    flat[:, border] = x.detach().reshape(x.shape[0], -1)[source][:, border]
    return shuffled
# moved from audit
def reconstruct_trigger(
    x: torch.Tensor, y: torch.Tensor, flagged: torch.Tensor, target: int, *, pixels: int = 4
) -> torch.Tensor:
    """Flat indices of the ``pixels`` features that flagged rows labelled ``target`` share and others lack.

    Backdoored rows are inputs of other classes carrying one common pattern, so the mean of the
    flagged ``target`` rows minus the mean of every row of another class singles the pattern out.
    """
    check_int("pixels", pixels, low=1, high=int(x[0].numel()))
    check_labels("y", y, n=x.shape[0])
    rows = flagged[y[flagged] == target]
    if len(rows) == 0 or not (y != target).any():
        raise ValueError(f"flagged must contain rows labelled {target}, and y rows of other classes")
    difference = (x[rows].mean(0) - x[y != target].mean(0)).flatten()
    return torch.topk(difference, pixels).indices.sort().values


def stamp(x: torch.Tensor, pixels: torch.Tensor, *, value: float = 1.0) -> torch.Tensor:
    """A copy of ``x`` with the given flat feature indices set to ``value`` (a candidate trigger)."""
    check_fraction("value", value)
    out = x.detach().clone().flatten(1)
    out[:, pixels] = value
    return out.reshape(x.shape)
