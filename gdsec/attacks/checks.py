"""The robustness checks and the adaptive-attack building blocks, one owner each, beside the attacks.

As AutoAttack keeps its ``checks.py`` next to its attacks, every layer above (:func:`gdsec.attacks.evaluate`,
:mod:`gdsec.masking`, :mod:`gdsec.audit`) asks these questions through this module:

* :func:`is_randomised`: do repeated forward passes of the same input differ?
* :func:`zero_gradient_rows`: which rows have a zero cross-entropy input gradient?
* :func:`looks_like_probabilities`: does the model return probabilities instead of logits?
* :func:`gradient_inconsistency`: does autograd's directional derivative agree with a finite
  difference of the forward pass (a custom or decoy backward pass does not)?
* :func:`flat_output`: does the scale-free margin stay put over random points of the ``eps``-ball
  (flat scores give a score-based attack nothing to descend)?
* :func:`gdsec.attacks.continuity.boundary_jump` (beside them, with the flag texts
  :func:`~gdsec.attacks.continuity.consistency_flags`): is the scale-free margin about 0 where the
  decision changes?
* :class:`MeanOfDraws`: EOT, the mean logits of several forward passes of a randomised model;
* :class:`StraightThrough` and its builder :func:`straight_through`: BPDA, a layer's forward pass
  with the identity as its backward pass (:func:`straight_through_grad`, the same rule for any tensor).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from gdsec.attacks._core import checked_logits, cross_entropy, input_gradient, margin, row_norm
from gdsec.streams import random_stream
from gdsec.validation import check_batch, check_int, check_model, check_number, check_seed

__all__ = [
    "FLAT_TOL",
    "INCONSISTENT_TOL",
    "PROBE_ROWS",
    "MeanOfDraws",
    "StraightThrough",
    "flat_output",
    "gradient_inconsistency",
    "is_randomised",
    "logit_scale",
    "looks_like_probabilities",
    "straight_through",
    "straight_through_grad",
    "zero_gradient_rows",
]

#: How many rows the model checks (randomised? probabilities?) probe, wherever they run.
PROBE_ROWS = 100

#: The smallest directional derivative (scale-free statistic per unit of input) the consistency
#: check divides by: below it both derivatives are rounding noise.
FD_FLOOR = 1e-3

#: Median relative disagreement (:func:`gdsec.attacks.checks.gradient_inconsistency`) above which
#: the backward pass is not the forward pass's. Measured median over 100 digits: honest MLP, CNN,
#: tabular, two-class, x1000 and float64 copies 0.0001-0.0003 (90th percentile at most 0.0015);
#: decoy, quantised and randomised models 1.0.
INCONSISTENT_TOL = 0.1

#: Median spread of the scale-free margin over the ball (:func:`gdsec.attacks.checks.flat_output`)
#: below which the output is flat. Measured at eps 0.1: honest models 0.032-0.31, saturated and
#: quantised 0.037-0.063, the decoy 0.0.
FLAT_TOL = 1e-3

#: How far from [0, 1] and from a row sum of 1 outputs may be and still count as probabilities.
PROBABILITY_TOL = 1e-5


def is_randomised(model: nn.Module, x: torch.Tensor, *, tol: float = 0.0) -> bool:
    """Whether two forward passes of ``model`` on the same ``x`` differ by more than ``tol`` anywhere.

    The one definition the package uses: the model is randomised if repeated forward passes of the
    same input, in the mode the model is in (the mode in which it will be attacked or deployed; a
    model left in training mode is not switched to eval), differ at all beyond ``tol`` (largest
    absolute difference of the outputs). ``tol`` is 0 by default: repeated forward passes of a
    deterministic model on the same device are bit-identical on CPU, so any difference, even 1e-6
    of noise, counts. The attack contract runs attacks in eval mode, so :func:`gdsec.attacks.evaluate`,
    :func:`gdsec.masking.sanity_checks` and the audit ask in eval mode. NaNs in the same places agree.
    Used in chapters 8 and 10.
    """
    check_model("model", model)
    tol = check_number("tol", tol, low=0.0)
    with torch.no_grad():
        first, second = checked_logits(model, x), checked_logits(model, x)
    return not torch.allclose(first, second, rtol=0.0, atol=tol, equal_nan=True)


def zero_gradient_rows(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, atol: float = 0.0
) -> torch.Tensor:
    """Per row (bool, shaped (N,)): is the cross-entropy gradient w.r.t. the input zero (within ``atol``)?

    AutoAttack's check_zero_gradients: a saturated or non-differentiable model gives the gradient
    attacks nothing to climb. The model runs in the mode it is in. Used in chapters 8 and 10.
    """
    atol = check_number("atol", atol, low=0.0)
    _, grad = input_gradient(model, x, y, cross_entropy)
    return row_norm(grad, "inf") <= atol


def looks_like_probabilities(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether every output row of ``model`` on ``x`` lies in [0, 1] and sums to 1 (check_range_output).

    Attacks need logits: a softmax output saturates and its gradients vanish. Used in chapters 8 and 10.
    """
    with torch.no_grad():
        out = checked_logits(model, x)
    inside = out.min() > -PROBABILITY_TOL and out.max() < 1 + PROBABILITY_TOL
    return bool(inside and ((out.sum(1) - 1).abs() < PROBABILITY_TOL).all())


def logit_scale(logits: torch.Tensor) -> torch.Tensor:
    """ONE scale for a batch of logits: the median L2 norm of the centred rows (detached, positive).

    Dividing by it makes a statistic scale-free (logits x 1000 give the same numbers) while every
    row keeps its gradient, two classes included. Used in chapters 8 and 10.
    """
    with torch.no_grad():
        norms = (logits - logits.mean(dim=1, keepdim=True)).norm(dim=1)
        return norms.median().clamp_min(torch.finfo(logits.dtype).tiny)


def _unit_directions(x: torch.Tensor, h: float, generator: torch.Generator) -> torch.Tensor:
    """Random L2-unit directions per row, zero on the coordinates where ``x +- h`` leaves [0, 1]."""
    v = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=generator.device).to(
        x.device
    )
    v = v * ((x >= h) & (x <= 1 - h)).to(x.dtype)
    norms = v.flatten(1).norm(dim=1).clamp_min(torch.finfo(x.dtype).tiny)
    return v / norms.reshape(-1, *([1] * (x.dim() - 1)))


def gradient_inconsistency(
    model: nn.Module, x: torch.Tensor, *, directions: int = 4, h: float = 1e-3, seed: int = 0
) -> torch.Tensor:
    """Per row (shaped (N,)): median relative disagreement of autograd and a central finite difference.

    The statistic is a random (seeded) weighting of the centred logits over :func:`logit_scale` of
    the clean rows (scale-free, fine for two classes); along ``directions`` random unit directions
    that stay in [0, 1] within ``h``, ``|d_auto - d_fd| / max(|d_auto|, |d_fd|, FD_FLOOR)``: about 0
    for an honest model (float rounding, a ReLU kink now and then), about 1 for a backward pass that
    is not the forward pass's (a decoy gradient, BPDA left in place). The model runs in the mode it
    is in. Used in chapters 8 and 10.
    """
    check_model("model", model)
    x = check_batch("x", x, unit=True).detach()
    directions = check_int("directions", directions, low=1)
    h = check_number("h", h, low=0.0, low_open=True, high=0.25)
    generator = random_stream(check_seed(seed), "attacks.checks.gradient_inconsistency")
    with torch.no_grad():
        clean = checked_logits(model, x)
    scale = logit_scale(clean)
    weights = torch.randn(
        clean.shape, generator=generator, dtype=clean.dtype, device=generator.device
    ).to(clean.device)

    def statistic(points: torch.Tensor) -> torch.Tensor:
        z = checked_logits(model, points)
        return ((z - z.mean(dim=1, keepdim=True)) * weights).sum(1) / scale

    disagreement = []
    for _ in range(directions):
        v = _unit_directions(x, h, generator)
        probe = x.clone().requires_grad_(True)
        out = statistic(probe)
        grad = None
        if out.requires_grad:
            (grad,) = torch.autograd.grad(out.sum(), probe, allow_unused=True)
        auto = torch.zeros_like(out) if grad is None else (grad * v).flatten(1).sum(1)
        with torch.no_grad():
            finite = (statistic(x + h * v) - statistic(x - h * v)) / (2 * h)
        auto = auto.detach().to(finite.dtype)
        size = torch.maximum(auto.abs(), finite.abs()).clamp_min(FD_FLOOR)
        disagreement.append((auto - finite).abs() / size)
    return torch.stack(disagreement).median(0).values


def flat_output(
    model: nn.Module, x: torch.Tensor, eps: float, *, points: int = 8, seed: int = 0
) -> torch.Tensor:
    """Per row (shaped (N,)): spread (std) of the scale-free margin over random points of the ``eps``-ball.

    The margin of the clean prediction, ``z_c - max_{k != c} z_k``, over :func:`logit_scale` of the
    clean rows, at ``points`` uniform points of the L-infinity ball (clipped to [0, 1]): an honest
    model's margin moves with its input, flat scores (a one-hot output, a saturated or decoy
    wrapper) do not until the decision flips, leaving a score-based attack nothing to descend. The
    model runs in the mode it is in. Used in chapters 8 and 10.
    """
    check_model("model", model)
    x = check_batch("x", x, unit=True).detach()
    eps = check_number("eps", eps, low=0.0)
    points = check_int("points", points, low=2)
    generator = random_stream(check_seed(seed), "attacks.checks.flat_output")
    with torch.no_grad():
        clean = checked_logits(model, x)
        scale, predicted = logit_scale(clean), clean.argmax(1)
        margins = []
        for _ in range(points):
            noise = torch.rand(
                x.shape, generator=generator, dtype=x.dtype, device=generator.device
            ).to(x.device)
            z = checked_logits(model, (x + eps * (2 * noise - 1)).clamp(0.0, 1.0))
            margins.append(margin(z, predicted) / scale)
    return torch.stack(margins).std(0)


class MeanOfDraws(nn.Module):
    """EOT (expectation over transformation): the mean logits of ``draws`` forward passes of ``model``.

    Gradients average over the draws too, so an attack on this wrapper climbs the expected loss of a
    randomised model. Taught in chapter 8.
    """

    def __init__(self, model: nn.Module, draws: int) -> None:
        super().__init__()
        self.model = check_model("model", model)
        self.draws = check_int("draws", draws, low=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of ``draws`` random logits of ``x``."""
        return torch.stack([self.model(x) for _ in range(self.draws)]).mean(0)


class StraightThrough(nn.Module):
    """BPDA (Athalye et al. 2018): ``layer``'s forward pass with the identity as its backward pass.

    Taught in chapter 8.
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``layer(x)`` in value, ``x`` in gradient."""
        return straight_through_grad(self.layer(x), x)


def straight_through_grad(value: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """BPDA's rule for one tensor: ``value`` in the forward pass, the identity to ``source`` backward.

    ``source`` is the input of the non-differentiable step that made ``value`` (same shape); the
    result equals ``value`` up to float rounding. Used in chapters 8 and 10.
    """
    return source + (value - source).detach()


def straight_through(model: nn.Sequential, layers: Iterable[int]) -> nn.Sequential:
    """A new ``nn.Sequential`` of ``model``'s layers with those at positions ``layers`` in :class:`StraightThrough`.

    The layers (and their parameters) are shared with ``model``, not copied. Used in chapters 8 and 10.
    """
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"model must be an nn.Sequential, got {type(model).__name__}")
    chosen = {check_int("layers", i, low=0, high=len(model) - 1) for i in layers}
    return nn.Sequential(*(StraightThrough(m) if i in chosen else m for i, m in enumerate(model)))
