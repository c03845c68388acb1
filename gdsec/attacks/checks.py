"""The robustness checks and the adaptive-attack building blocks, one owner each, beside the attacks.

As AutoAttack keeps its ``checks.py`` next to its attacks, every layer above (:func:`gdsec.attacks.evaluate`,
:mod:`gdsec.masking`, :mod:`gdsec.audit`) asks these questions through this module:

* :func:`is_randomised`: do repeated forward passes of the same input differ?
* :func:`zero_gradient_rows`: which rows have a zero cross-entropy input gradient?
* :func:`looks_like_probabilities`: does the model return probabilities instead of logits?
* :class:`MeanOfDraws`: EOT, the mean logits of several forward passes of a randomised model;
* :class:`StraightThrough` and its builder :func:`straight_through`: BPDA, a layer's forward pass
  with the identity as its backward pass.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from gdsec.attacks._core import checked_logits, cross_entropy, input_gradient, row_norm
from gdsec.validation import check_int, check_model, check_number

__all__ = [
    "PROBE_ROWS",
    "MeanOfDraws",
    "StraightThrough",
    "is_randomised",
    "looks_like_probabilities",
    "straight_through",
    "zero_gradient_rows",
]

#: How many rows the model checks (randomised? probabilities?) probe, wherever they run.
PROBE_ROWS = 100

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
        return x + (self.layer(x) - x).detach()


def straight_through(model: nn.Sequential, layers: Iterable[int]) -> nn.Sequential:
    """A new ``nn.Sequential`` of ``model``'s layers with those at positions ``layers`` in :class:`StraightThrough`.

    The layers (and their parameters) are shared with ``model``, not copied. Used in chapters 8 and 10.
    """
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"model must be an nn.Sequential, got {type(model).__name__}")
    chosen = {check_int("layers", i, low=0, high=len(model) - 1) for i in layers}
    return nn.Sequential(*(StraightThrough(m) if i in chosen else m for i, m in enumerate(model)))
