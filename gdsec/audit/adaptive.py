"""The audit's view of a model that no rescaling or hidden gradient can fool, and its adaptive attacks.

* :class:`NormalisedLogits` divides the logits by one temperature fitted on the trusted rows: the
  decisions are unchanged, and a copy of the model with its logits multiplied by 1,000 (a saturated
  softmax, chapter 8) gives the same numbers as the original, so scale cannot buy a better severity.
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
from gdsec.attacks.checks import logit_scale
from gdsec.audit.convergence_properties import fit_temperature
from gdsec.validation import check_model

__all__ = ["MAX_VIEW_MARGIN", "VIEW_NORM", "NormalisedLogits", "adaptive_robust", "suspect_layers"]

#: The median centred logit-row norm of the view without trusted rows: about what calibrated digits
#: models show (MLP 19.3, CNN 20.3), large enough that the softmax is not flat.
VIEW_NORM = 20.0

#: The largest median gap between the two top logits of the view: a model right on every trusted row
#: has its calibrated temperature at 0 (a saturated view); this floor keeps its softmax from
#: saturating (calibrated views: digits MLP and CNN 5.8, a two-class digits MLP 11).
MAX_VIEW_MARGIN = 20.0


class NormalisedLogits(nn.Module):
    """``model``'s logits divided by ONE temperature, fitted once: the same decisions at a scale no
    rescaling can change, with every row's input gradient kept (two classes included).

    With trusted rows ``(x, y)`` the temperature is :func:`fit_temperature`'s (the calibrated one,
    minimising the cross-entropy on them, floored so that the view's median top-two gap is at most
    :data:`MAX_VIEW_MARGIN`): a copy with its logits multiplied by 1,000 gets a
    temperature 1,000 times larger and the same view, and the cross-entropy attacks on the view
    are as strong as on a sensibly trained raw model (a per-row unit-norm view flattened the softmax
    and cost APGD-CE 5-9 points, and mapped any two-logit row to a constant). Without rows (the
    adaptive attacks' surrogates), each call divides by the median centred row norm of its batch
    (:func:`gdsec.attacks.checks.logit_scale`, detached, so gradients pass) over :data:`VIEW_NORM`.
    Taught in chapter 10.
    """

    def __init__(
        self, model: nn.Module, x: torch.Tensor | None = None, y: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.model = check_model("model", model)
        if (x is None) != (y is None):
            raise ValueError("x and y must be given together (trusted rows and their labels)")
        self.temperature = None
        if x is not None:
            with torch.no_grad():
                top = checked_logits(model, x).double().topk(2, dim=1).values
            floor = float((top[:, 0] - top[:, 1]).median()) / MAX_VIEW_MARGIN
            self.temperature = max(fit_temperature(model, x, y), floor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``x`` over the view's temperature."""
        z = checked_logits(self.model, x)
        if self.temperature is not None:
            return z / self.temperature
        return z / (logit_scale(z) / VIEW_NORM)


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
