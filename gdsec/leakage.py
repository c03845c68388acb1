"""Gradient leakage: rebuild a client's training inputs from the gradient it shares, and the defences.

Deep Leakage from Gradients (Zhu et al. 2019) optimises dummy inputs until their gradient matches
the shared one; label inference from the last layer (iDLG, Zhao et al. 2020) removes the labels
from the unknowns. The defences (gradient noise, pruning, DP-SGD via Opacus) are here too, so the
chapter can measure each against the same attack.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from gdsec.models import eval_mode
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
    "DPTraining",
    "add_gradient_noise",
    "client_gradients",
    "dlg",
    "dp_epsilon",
    "dp_gradients",
    "dp_train",
    "gradient_distance",
    "infer_labels",
    "match_reconstructions",
    "prune_gradients",
    "reconstruction_errors",
]

#: Gradient-matching distances: squared L2 as in DLG, or 1 - cosine similarity (Geiping et al. 2020).
DISTANCES = ("l2", "cosine")

#: Opacus warnings that are expected in a teaching setting and carry no information for the reader.
_OPACUS_EXPECTED = (
    r"Secure RNG turned off",
    r"Full backward hook is firing when gradients are computed with respect to module outputs",
    r"Optimal order is the (smallest|largest) alpha",
)


def _params(model: nn.Module) -> list[torch.Tensor]:
    """The parameters that a client's gradient covers (those requiring grad), in model order."""
    return [p for p in model.parameters() if p.requires_grad]


def _check_grads(name: str, grads: object, model: nn.Module) -> list[torch.Tensor]:
    """Return ``grads`` as a list if it holds one finite tensor per trainable parameter of ``model``."""
    params = _params(model)
    if not isinstance(grads, list | tuple) or not all(isinstance(g, torch.Tensor) for g in grads):
        raise ValueError(f"{name} must be a list of tensors, one per trainable parameter of the model")
    if len(grads) != len(params):
        raise ValueError(f"{name} must hold {len(params)} tensors (one per trainable parameter), got {len(grads)}")
    for i, (g, p) in enumerate(zip(grads, params, strict=True)):
        if g.shape != p.shape:
            raise ValueError(f"{name}[{i}] must have shape {tuple(p.shape)}, got {tuple(g.shape)}")
        if not g.is_floating_point() or not torch.isfinite(g).all():
            raise ValueError(f"{name}[{i}] must be a finite floating-point tensor")
    return list(grads)


def _check_batch(model: nn.Module, x: object, y: object) -> None:
    check_model("model", model)
    check_unit_tensor("x", x, min_dim=2)
    check_labels("y", y, n=x.shape[0])  # type: ignore[union-attr]


def client_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """The gradient a federated client shares: mean cross-entropy on (x, y), one tensor per parameter.

    The model's mode and the parameters' ``.grad`` are left as they were.
    """
    _check_batch(model, x, y)
    with eval_mode(model):
        loss = nn.functional.cross_entropy(model(x), y)
        return [g.detach().clone() for g in torch.autograd.grad(loss, _params(model))]


def _last_layer(grads: Sequence[torch.Tensor], n_classes: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The last layer's weight gradient (n_classes, k) and its bias gradient (n_classes,) if present."""
    bias = grads[-1] if grads[-1].dim() == 1 and grads[-1].shape[0] == n_classes else None
    for g in reversed(grads):
        if g.dim() == 2 and g.shape[0] == n_classes:
            return g, bias
    raise ValueError(f"target_grads must contain a last-layer weight gradient of shape ({n_classes}, k)")


def infer_labels(target_grads: Sequence[torch.Tensor], *, n_classes: int, batch_size: int = 1) -> torch.Tensor:
    """Labels read off the last layer's gradient (iDLG): the classes whose logit gradient is negative.

    With cross-entropy the gradient on logit c is softmax_c - 1[y = c] (averaged over the batch), so
    only the true classes can be negative. We use the bias gradient when the last layer has one, and
    otherwise the row sums of its weight gradient (exact for non-negative activations). Exact for a
    batch of one; for larger batches exact when the labels are distinct, a heuristic otherwise.
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
    """How far ``grads`` is from ``target``: summed squared difference, or 1 - cosine similarity."""
    check_choice("distance", distance, DISTANCES)
    if distance == "l2":
        return sum(((g - t) ** 2).sum() for g, t in zip(grads, target, strict=True))
    dot = sum((g * t).sum() for g, t in zip(grads, target, strict=True))
    norm_g = torch.sqrt(sum((g * g).sum() for g in grads))
    norm_t = torch.sqrt(sum((t * t).sum() for t in target))
    return 1 - dot / (norm_g * norm_t + 1e-12)


def _check_shape(x_shape: object) -> tuple[int, ...]:
    if not isinstance(x_shape, Sequence) or isinstance(x_shape, str) or len(x_shape) < 2:
        raise ValueError(f"x_shape must be a shape (batch, ...) with at least 2 entries, got {x_shape!r}")
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
    """
    check_model("model", model)
    shape = _check_shape(x_shape)
    check_int("n_classes", n_classes, low=2)
    check_int("steps", steps, low=1)
    check_number("lr", lr, low=0.0, low_open=True)
    check_int("seed", seed, low=0)
    check_choice("distance", distance, DISTANCES)
    target = [g.detach() for g in _check_grads("target_grads", target_grads, model)]
    if labels is None:
        y_rec = infer_labels(target, n_classes=n_classes, batch_size=shape[0])
    else:
        y_rec = check_labels("labels", labels, n=shape[0], n_classes=n_classes).clone()
    params = _params(model)
    generator = torch.Generator().manual_seed(seed)
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
    """
    for name, value in (("x_rec", x_rec), ("x", x)):
        check_unit_tensor(name, value, min_dim=2)
    if x_rec.shape != x.shape:
        raise ValueError(f"x_rec must have the shape of x {tuple(x.shape)}, got {tuple(x_rec.shape)}")
    cost = ((x_rec[:, None] - x[None]) ** 2).flatten(2).mean(2).double()
    rows, cols = linear_sum_assignment(cost.numpy())
    order = torch.empty(x.shape[0], dtype=torch.long)
    order[torch.as_tensor(cols)] = torch.as_tensor(rows)
    return x_rec[order].clone()


def reconstruction_errors(x_rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error after matching each reconstruction to one original (any order)."""
    matched = match_reconstructions(x_rec, x)
    return ((matched - x) ** 2).flatten(1).mean(1).double()


def add_gradient_noise(grads: Sequence[torch.Tensor], sigma: float, *, seed: int = 0) -> list[torch.Tensor]:
    """A copy of ``grads`` with independent Gaussian noise of standard deviation ``sigma`` per entry."""
    check_number("sigma", sigma, low=0.0)
    check_int("seed", seed, low=0)
    generator = torch.Generator().manual_seed(seed)
    return [g.detach() + sigma * torch.randn(g.shape, generator=generator, dtype=g.dtype) for g in grads]


def prune_gradients(grads: Sequence[torch.Tensor], fraction: float) -> list[torch.Tensor]:
    """A copy of ``grads`` with the ``fraction`` smallest-magnitude entries of each tensor set to zero."""
    check_number("fraction", fraction, low=0.0, high=1.0)
    pruned = []
    for g in grads:
        k = int(round(fraction * g.numel()))
        out = g.detach().clone().reshape(-1)
        if k > 0:
            out[torch.argsort(out.abs())[:k]] = 0
        pruned.append(out.reshape(g.shape))
    return pruned


def dp_gradients(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    max_grad_norm: float = 1.0,
    noise_multiplier: float,
    seed: int = 0,
) -> list[torch.Tensor]:
    """The DP-SGD update of a batch (Abadi et al. 2016), as Opacus computes it with flat clipping.

    Each example's gradient is clipped to L2 norm ``max_grad_norm`` (C), the clipped gradients are
    summed, Gaussian noise of standard deviation ``noise_multiplier * C`` is added, and the sum is
    divided by the batch size. The model and its ``.grad`` are left untouched.
    """
    _check_batch(model, x, y)
    clip = check_number("max_grad_norm", max_grad_norm, low=0.0, low_open=True)
    sigma = check_number("noise_multiplier", noise_multiplier, low=0.0)
    check_int("seed", seed, low=0)
    total = [torch.zeros_like(p) for p in _params(model)]
    for i in range(x.shape[0]):
        per_example = client_gradients(model, x[i : i + 1], y[i : i + 1])
        norm = torch.sqrt(sum((g * g).sum() for g in per_example))
        factor = (clip / (norm + 1e-6)).clamp(max=1.0)
        total = [t + factor * g for t, g in zip(total, per_example, strict=True)]
    noisy = add_gradient_noise(total, sigma * clip, seed=seed)
    return [g / x.shape[0] for g in noisy]


def dp_epsilon(noise_multiplier: float, *, sample_rate: float, steps: int, delta: float = 1e-5) -> float:
    """Opacus's RDP accountant: the epsilon of ``steps`` DP-SGD steps at this noise and sampling rate."""
    sigma = check_number("noise_multiplier", noise_multiplier, low=0.0)
    check_number("sample_rate", sample_rate, low=0.0, high=1.0, low_open=True)
    check_int("steps", steps, low=1)
    check_number("delta", delta, low=0.0, high=1.0, low_open=True, high_open=True)
    if sigma == 0:
        return math.inf
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(sigma, sample_rate, steps)]
    with warnings.catch_warnings():
        for message in _OPACUS_EXPECTED:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        return float(accountant.get_epsilon(delta))


class DPTraining(NamedTuple):
    """What a DP-SGD run spent: Opacus's epsilon at ``delta``, and the run's settings."""

    epsilon: float
    delta: float
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int


def dp_train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    noise_multiplier: float,
    max_grad_norm: float = 1.0,
    lr: float = 0.01,
    epochs: int = 10,
    batch_size: int = 64,
    delta: float = 1e-5,
    seed: int = 0,
) -> DPTraining:
    """Train ``model`` in place with DP-Adam through Opacus (Poisson sampling, flat clipping).

    Returns Opacus's RDP accountant's epsilon at ``delta``. Opacus's expected warnings (secure RNG
    off, backward hooks on inputs without grad, alpha range) are silenced here by message. The
    model is left in eval mode, without Opacus hooks.
    """
    _check_batch(model, x, y)
    sigma = check_number("noise_multiplier", noise_multiplier, low=0.0)
    clip = check_number("max_grad_norm", max_grad_norm, low=0.0, low_open=True)
    check_number("lr", lr, low=0.0, low_open=True)
    check_int("epochs", epochs, low=1)
    check_int("batch_size", batch_size, low=1, high=x.shape[0])
    check_number("delta", delta, low=0.0, high=1.0, low_open=True, high_open=True)
    check_int("seed", seed, low=0)
    from opacus import PrivacyEngine

    work = copy.deepcopy(model)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    with warnings.catch_warnings():
        for message in _OPACUS_EXPECTED:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        engine = PrivacyEngine(accountant="rdp")
        private, optimizer, private_loader = engine.make_private(
            module=work, optimizer=torch.optim.Adam(work.parameters(), lr=lr), data_loader=loader,
            noise_multiplier=sigma, max_grad_norm=clip,
            noise_generator=torch.Generator().manual_seed(seed),
        )
        private.train()
        steps = 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for _ in range(epochs):
                for xb, yb in private_loader:
                    optimizer.zero_grad(set_to_none=True)
                    nn.functional.cross_entropy(private(xb), yb).backward()
                    optimizer.step()
                    steps += 1
        epsilon = math.inf if sigma == 0 else float(engine.get_epsilon(delta))
        private.remove_hooks()
    model.load_state_dict(work.state_dict())
    model.eval()
    return DPTraining(epsilon, delta, sigma, clip, 1.0 / len(loader), steps)

