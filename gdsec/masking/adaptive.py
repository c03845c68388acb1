"""Adaptive attacks, one fix per failure mode: BPDA (shattered), EOT (stochastic), reparameterisation
(exploding or vanishing through an iterative defence), plus transfer from a surrogate."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gdsec.attacks import pgd
from gdsec.masking.defences import Generator, Purifier, Quantize, RandomQuantize, Temperature
from gdsec.validation import check_int, check_model

__all__ = ["bpda", "eot", "reparameterise", "transfer"]

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


class _StraightThrough(nn.Module):
    """Forward: ``layer(x)``. Backward: the identity (the BPDA approximation of ``layer``)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``layer(x)`` in value, ``x`` in gradient."""
        return x + (self.layer(x) - x).detach()


class _Averaged(nn.Module):
    """Mean logits of ``samples`` forward passes of a random model (expectation over transformation)."""

    def __init__(self, model: nn.Module, samples: int) -> None:
        super().__init__()
        self.model = model
        self.samples = samples

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Average of the logits of ``samples`` random draws."""
        return torch.stack([self.model(x) for _ in range(self.samples)]).mean(dim=0)


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
        raise ValueError(f"model must be an nn.Sequential built by defend(), got {type(model).__name__}")
    return model


def bpda(model: nn.Module) -> nn.Sequential:
    """The attacker's differentiable stand-in for a defended ``nn.Sequential``: quantizers keep their
    forward pass but pass gradients straight through; temperature layers (which never change the
    predicted class) are dropped. Other layers, and all parameters, are shared with ``model``.

    Taught in chapter 8.
    """
    layers: list[nn.Module] = []
    for layer in _sequential(model):
        if isinstance(layer, Quantize | RandomQuantize):
            layers.append(_StraightThrough(layer))
        elif not isinstance(layer, Temperature):
            layers.append(layer)
    return nn.Sequential(*layers)


def reparameterise(model: nn.Module) -> nn.Sequential:
    """The stand-in for a defended ``nn.Sequential`` whose :class:`Purifier` layers become ``h(z(x))``.

    A purifier maps every point of its generator's range to itself, ``g(h(z)) = h(z)``, so the
    attacker writes the purified input as ``h(z)`` with ``z`` the (closed-form) latent code and
    differentiates through ``h`` instead of through the unrolled loop (Athalye et al.'s fix for
    exploding and vanishing gradients). Other layers, and all parameters, are shared with ``model``.
    Taught in chapter 8.
    """
    layers = [_Reparameterised(layer.generator) if isinstance(layer, Purifier) else layer for layer in _sequential(model)]
    if not any(isinstance(layer, _Reparameterised) for layer in layers):
        raise ValueError("model must contain a masking.Purifier to reparameterise (see masking.defend(..., 'purify'))")
    return nn.Sequential(*layers)


def eot(model: nn.Module, *, samples: int = 8) -> nn.Module:
    """Expectation over transformation: a model whose logits are the mean over ``samples`` random draws.

    Taught in chapter 8.
    """
    check_model("model", model)
    return _Averaged(model, check_int("samples", samples, low=1))


def transfer(surrogate: nn.Module, attack: Callable[..., torch.Tensor] = pgd, **attack_kwargs: object) -> Attack:
    """A callable ``(model, x, y) -> x_adv`` that ignores ``model`` and crafts ``x_adv`` on ``surrogate``.

    Taught in chapter 8.
    """
    check_model("surrogate", surrogate)
    if not callable(attack):
        raise ValueError("attack must be a callable (model, x, y, ...) -> x_adv, such as gdsec.attacks.pgd")

    def crafted(_model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return attack(surrogate, x, y, **attack_kwargs)

    return crafted
