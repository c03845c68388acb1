"""The audit's view of a model that no rescaling or hidden gradient can fool, and its adaptive attacks.

* :class:`NormalisedLogits` centres each row of logits and scales it to unit length: the decisions
  are unchanged, and a copy of the model with its logits multiplied by 1,000 (a saturated softmax,
  chapter 8) gives the same numbers as the original, so scale cannot buy a better severity.
* :func:`suspect_layers` finds the layers of an ``nn.Sequential`` whose output is random or whose
  input gradient is exactly zero; :func:`gdsec.attacks.straight_through` replaces them by their BPDA
  surrogate (forward pass kept, identity backward pass).
* :func:`adaptive_robust` runs the adaptive attacks of Tramer et al. (2020): BPDA on the suspect
  layers, EOT on a random forward pass, and transfer from a surrogate, scored like the target.
"""

from __future__ import annotations

import torch
from torch import nn

from gdsec.attacks import MeanOfDraws, apgd, checked_logits, straight_through

__all__ = ["NormalisedLogits", "adaptive_robust", "suspect_layers"]


class NormalisedLogits(nn.Module):
    """``model`` with each row of logits centred and scaled to unit L2 norm (same predicted classes).

    Taught in chapter 10.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Centred unit-norm logits of ``x``."""
        z = checked_logits(self.model, x)
        z = z - z.mean(dim=1, keepdim=True)
        return z / z.norm(dim=1, keepdim=True).clamp_min(1e-30)


def _zero_or_random(layer: nn.Module, h: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``layer(h)`` and whether that layer is random or passes back an exactly zero gradient."""
    h = h.detach().requires_grad_(True)
    out = layer(h)
    with torch.no_grad():
        random = not torch.equal(out, layer(h))
    if not out.requires_grad:
        return out.detach(), True
    (grad,) = torch.autograd.grad(out, h, grad_outputs=torch.ones_like(out), allow_unused=True)
    return out.detach(), random or grad is None or not bool(grad.abs().sum() > 0)


def suspect_layers(model: nn.Module, x: torch.Tensor) -> list[int]:
    """Positions of the top-level layers of an ``nn.Sequential`` that are random or have zero gradient.

    Only shape-preserving layers are listed (those a straight-through surrogate can replace); a model
    that is not an ``nn.Sequential`` has no layer the audit can locate, and gets ``[]``.
    Taught in chapter 10.
    """
    if not isinstance(model, nn.Sequential):
        return []
    found, h = [], x
    for i, layer in enumerate(model):
        out, suspect = _zero_or_random(layer, h)
        if suspect and out.shape == h.shape and not any(True for _ in layer.parameters()):
            found.append(i)
        h = out
    return found


def _still_right(score: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Rows of ``x_adv`` that ``score`` still classifies correctly."""
    with torch.no_grad():
        return checked_logits(score, x_adv).argmax(1) == y


def adaptive_robust(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    surrogate: nn.Module,
    steps: int,
    draws: int,
    randomised: bool,
    seed: int = 0,
) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Per-row robustness under each adaptive attack (``transfer``, ``bpda``), and the suspect layers.

    Each attack is APGD-CE on normalised logits: crafted on ``surrogate`` (transfer, always run), and
    on the model with its suspect layers replaced by straight-through surrogates (BPDA, when there are
    any), averaged over ``draws`` draws when the forward pass is random (EOT). A row is scored
    by the model itself, by the mean logits of ``draws`` draws if it is random (``randomised``).
    Taught in chapter 10.
    """
    score = MeanOfDraws(model, draws) if randomised else model
    suspects = suspect_layers(model, x[:8])
    crafted = {"transfer": apgd(NormalisedLogits(surrogate), x, y, eps, steps=steps, seed=seed)}
    if suspects:
        stand_in: nn.Module = straight_through(model, suspects)  # type: ignore[arg-type]
        stand_in = MeanOfDraws(stand_in, draws) if randomised else stand_in
        crafted["bpda"] = apgd(NormalisedLogits(stand_in), x, y, eps, steps=steps, seed=seed)
    return {name: _still_right(score, x_adv, y) for name, x_adv in crafted.items()}, suspects
