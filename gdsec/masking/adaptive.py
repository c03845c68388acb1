"""Adaptive attacks, one fix per failure mode: BPDA (shattered), EOT (stochastic), reparameterisation
(exploding or vanishing through an iterative defence), plus transfer from a surrogate."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gdsec.attacks import Attack, Budget, pgd
from gdsec.attacks.checks import MeanOfDraws, straight_through
from gdsec.masking.defences import Generator, Purifier, Quantize, RandomQuantize, Temperature
from gdsec.validation import check_model

__all__ = ["bpda", "eot", "reparameterise", "transfer"]


class _Reparameterised(nn.Module):
    """``h(z(x))``: the generator applied to the latent code of ``x``, where the purifier is the identity."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The closed-form projection of ``x`` onto the generator's range."""
        return self.generator(self.generator.encode(x)).reshape(x.shape)


def _sequential(model: nn.Module) -> nn.Sequential:
    """``model`` checked to be an ``nn.Sequential`` (as :func:`gdsec.masking.defend` builds)."""
    check_model("model", model)
    if not isinstance(model, nn.Sequential):
        raise ValueError(
            f"model must be an nn.Sequential built by defend(), got {type(model).__name__}"
        )
    return model


def bpda(model: nn.Module) -> nn.Sequential:
    """The attacker's differentiable stand-in for a defended ``nn.Sequential``: quantizers keep their
    forward pass but pass gradients straight through; temperature layers (which never change the
    predicted class) are dropped. Other layers, and all parameters, are shared with ``model``
    (:func:`gdsec.attacks.checks.straight_through` wraps the quantizers).

    Taught in chapter 8.
    """
    kept = nn.Sequential(
        *(layer for layer in _sequential(model) if not isinstance(layer, Temperature))
    )
    quantizers = [i for i, layer in enumerate(kept) if isinstance(layer, Quantize | RandomQuantize)]
    return straight_through(kept, quantizers)


def reparameterise(model: nn.Module) -> nn.Sequential:
    """The stand-in for a defended ``nn.Sequential`` whose :class:`Purifier` layers become ``h(z(x))``.

    A purifier maps every point of its generator's range to itself, ``g(h(z)) = h(z)``, so the
    attacker writes the purified input as ``h(z)`` with ``z`` the (closed-form) latent code and
    differentiates through ``h`` instead of through the unrolled loop (Athalye et al.'s fix for
    exploding and vanishing gradients). Other layers, and all parameters, are shared with ``model``.
    Taught in chapter 8.
    """
    layers = [
        _Reparameterised(layer.generator) if isinstance(layer, Purifier) else layer
        for layer in _sequential(model)
    ]
    if not any(isinstance(layer, _Reparameterised) for layer in layers):
        raise ValueError(
            "model must contain a masking.Purifier to reparameterise (see masking.defend(..., 'purify'))"
        )
    return nn.Sequential(*layers)


def eot(model: nn.Module, *, draws: int = Budget().draws) -> MeanOfDraws:
    """Expectation over transformation: a model whose logits are the mean over ``draws`` random draws.

    ``draws`` defaults to the attack budget's (:class:`gdsec.attacks.Budget`), as in the audit.

    The attacker's stand-in for a randomised defence, a :class:`gdsec.attacks.MeanOfDraws`.
    Taught in chapter 8.
    """
    return MeanOfDraws(model, draws)


def transfer(
    surrogate: nn.Module, attack: Callable[..., torch.Tensor] = pgd, **attack_kwargs: object
) -> Attack:
    """A callable ``(model, x, y) -> x_adv`` that ignores ``model`` and crafts ``x_adv`` on ``surrogate``.

    Taught in chapter 8.
    """
    check_model("surrogate", surrogate)
    if not callable(attack):
        raise ValueError(
            "attack must be a callable (model, x, y, ...) -> x_adv, such as gdsec.attacks.pgd"
        )

    def crafted(_model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return attack(surrogate, x, y, **attack_kwargs)

    return crafted
