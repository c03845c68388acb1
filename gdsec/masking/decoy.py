"""A checklist-aware wrapper: an honest model's decisions, flat outputs and a decoy's gradient.

:class:`DecoyGradient` is the construction of the round-2 review (chapter 10, section 2.8): its
forward pass returns ``scale * onehot(argmax model(x))`` plus a fixed class-wise offset, so its
decisions are exactly ``model``'s while its scores are flat; its backward pass returns the gradient
of the mean logits of ``decoys`` (models the defender trained), so every white-box attack becomes a
transfer attack from a surrogate the defender chose. ``model``'s parameters stay in the graph with
zero weight, so a check that asks for parameter gradients sees them.
It is a known-truth test for the audit's flags (gradient consistency, flat output), not a defence:
its true robust accuracy is at most ``model``'s.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gdsec.validation import check_model, check_number

__all__ = ["DecoyGradient"]


class DecoyGradient(nn.Module):
    """``model``'s decisions as flat scores, with the gradient of the mean logits of ``decoys``.

    Forward: ``scale * onehot(argmax model(x)) + offset_c`` with ``offset_c`` evenly spaced in
    ``[0, offset]`` (``offset < scale`` keeps the decisions). Backward: d(mean of ``decoys``' logits)/dx.
    Taught in chapter 10.
    """

    def __init__(
        self,
        model: nn.Module,
        decoys: Sequence[nn.Module],
        *,
        scale: float = 5.0,
        offset: float = 0.5,
    ) -> None:
        super().__init__()
        self.model = check_model("model", model)
        if isinstance(decoys, nn.Module) or not isinstance(decoys, Sequence) or not decoys:
            raise ValueError("decoys must be a non-empty sequence of nn.Module")
        self.decoys = nn.ModuleList(check_model("decoys", d) for d in decoys)
        self.scale = check_number("scale", scale, low=0.0, low_open=True)
        self.offset = check_number("offset", offset, low=0.0)
        if self.offset >= self.scale:
            raise ValueError(f"offset must be below scale ({self.scale}), got {self.offset}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Flat scores with ``model``'s argmax in value, the decoys' mean-logit gradient in gradient."""
        honest = self.model(x)
        classes = honest.shape[1]
        flat = self.scale * nn.functional.one_hot(honest.argmax(1), classes).to(honest.dtype)
        flat = flat + torch.linspace(
            0.0, self.offset, classes, device=honest.device, dtype=honest.dtype
        )
        decoy = torch.stack([d(x) for d in self.decoys]).mean(0).to(honest.dtype)
        if decoy.shape != honest.shape:
            raise ValueError(
                f"decoys must return logits shaped like model's {tuple(honest.shape)}, "
                f"got {tuple(decoy.shape)}"
            )
        return flat + (decoy - decoy.detach()) + 0.0 * (honest - honest.detach())
