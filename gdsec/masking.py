"""Gradient masking: "defences" that hide the gradient instead of removing adversarial examples,
the attacks that see through them, and the sanity checks that flag them.

Defences (wrap a trained classifier with :func:`defend`):

* ``"quantize"`` — round every input to a few grey levels first; rounding has zero derivative, so
  the gradient reaching the input is exactly zero (a non-differentiable preprocessing step).
* ``"temperature"`` — multiply the logits by a large temperature, the effect of defensive
  distillation at test time: the softmax saturates and the cross-entropy gradient underflows to 0.
* ``"random"`` — add random noise, then quantize: a randomised and non-differentiable preprocessing.

Attacks that see through them: :func:`bpda` (backward pass differentiable approximation: keep the
forward pass, replace each masking layer's backward pass by the identity, or drop a layer that does
not change the prediction), :func:`eot` (expectation over transformation: average the logits of
several random draws) and :func:`transfer` (craft on a surrogate, replay on the target), plus the
gradient-free (query) attacks of :mod:`gdsec.attacks`.

:func:`sanity_checks` runs the checklist of Athalye et al. (2018) and Carlini et al. (2019) on a
model and says whether its robustness looks like masking.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from gdsec.attacks import (
    check_attack_inputs,
    fgsm,
    input_gradient,
    pgd,
    robust_accuracy,
    row_norm,
    square_attack,
)
from gdsec.models import eval_mode
from gdsec.validation import check_choice, check_int, check_model, check_number, check_seed

__all__ = [
    "DEFENCES",
    "MaskingReport",
    "Quantize",
    "RandomQuantize",
    "Temperature",
    "bpda",
    "defend",
    "eot",
    "input_gradient_zero_fraction",
    "sanity_checks",
    "transfer",
]

DEFENCES = ("quantize", "temperature", "random")

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


class Quantize(nn.Module):
    """Round inputs in [0, 1] to ``levels`` evenly spaced grey levels (zero gradient almost everywhere).

    Taught in chapter 8.
    """

    def __init__(self, levels: int = 3) -> None:
        super().__init__()
        self.levels = check_int("levels", levels, low=2, high=256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Quantized copy of ``x``."""
        return torch.round(x * (self.levels - 1)) / (self.levels - 1)


class RandomQuantize(nn.Module):
    """Add uniform noise in [-noise, noise], clip to [0, 1], then quantize: random and non-differentiable.

    The noise comes from a private generator seeded with ``seed``: a fresh draw on every call, and
    the same sequence of draws for the same seed. Taught in chapter 8.
    """

    def __init__(self, levels: int = 3, noise: float = 0.2, *, seed: int = 0) -> None:
        super().__init__()
        self.levels = check_int("levels", levels, low=2, high=256)
        self.noise = check_number("noise", noise, low=0.0, high=1.0)
        self.generator = check_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Noisy, quantized copy of ``x`` (a fresh draw on every call)."""
        draw = torch.rand(x.shape, generator=self.generator, dtype=x.dtype)
        noisy = (x + (draw * 2 - 1) * self.noise).clamp(0.0, 1.0)
        return torch.round(noisy * (self.levels - 1)) / (self.levels - 1)


class Temperature(nn.Module):
    """Multiply logits by ``temperature``: same predictions, a saturated softmax, vanishing gradients.

    Taught in chapter 8.
    """

    def __init__(self, temperature: float = 1000.0) -> None:
        super().__init__()
        self.temperature = check_number("temperature", temperature, low=0.0, low_open=True)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """Scaled logits."""
        return logits * self.temperature


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


def defend(
    classifier: nn.Module, kind: str, *, levels: int = 3, temperature: float = 1000.0, noise: float = 0.2, seed: int = 0
) -> nn.Sequential:
    """Wrap ``classifier`` in a masking defence ``kind`` (one of ``DEFENCES``); the classifier is shared.

    ``seed`` seeds the noise of the ``"random"`` defence. Taught in chapter 8.
    """
    check_model("classifier", classifier)
    check_choice("kind", kind, DEFENCES)
    if kind == "quantize":
        return nn.Sequential(Quantize(levels), classifier)
    if kind == "random":
        return nn.Sequential(RandomQuantize(levels, noise, seed=seed), classifier)
    return nn.Sequential(classifier, Temperature(temperature))


def bpda(model: nn.Module) -> nn.Sequential:
    """The attacker's differentiable stand-in for a defended ``nn.Sequential``: quantizers keep their
    forward pass but pass gradients straight through; temperature layers (which never change the
    predicted class) are dropped. Other layers, and all parameters, are shared with ``model``.

    Taught in chapter 8.
    """
    check_model("model", model)
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"model must be an nn.Sequential built by defend(), got {type(model).__name__}")
    layers: list[nn.Module] = []
    for layer in model:
        if isinstance(layer, Quantize | RandomQuantize):
            layers.append(_StraightThrough(layer))
        elif not isinstance(layer, Temperature):
            layers.append(layer)
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


def input_gradient_zero_fraction(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, atol: float = 1e-12) -> float:
    """Fraction of rows whose cross-entropy gradient w.r.t. the input is zero (within ``atol``).

    Taught in chapter 8.
    """
    check_attack_inputs(model, x, y)
    check_number("atol", atol, low=0.0)
    with eval_mode(model):
        _, grad = input_gradient(model, x, y)
    return (row_norm(grad, "inf") <= atol).float().mean().item()


class MaskingReport(NamedTuple):
    """Outcome of :func:`sanity_checks`: ``masked`` if any check failed; which passed; the measurements.

    Taught in chapter 8.
    """

    masked: bool
    checks: dict[str, bool]
    evidence: dict[str, float]


def sanity_checks(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    surrogate: nn.Module | None = None,
    steps: int = 20,
    queries: int = 300,
    tol: float = 0.05,
    seed: int = 0,
) -> MaskingReport:
    """Run the robustness-evaluation sanity checks on ``model`` at L-infinity budget ``eps``.

    Each check compares robust accuracies measured on (x, y); a check fails when the weaker attack
    beats the stronger one by more than ``tol``:

    * ``iterative_beats_single_step``: PGD (``steps`` steps) is no better for the defender than FGSM;
    * ``whitebox_beats_blackbox``: PGD is no better for the defender than the gradient-free Square
      Attack (``queries`` queries);
    * ``whitebox_beats_transfer`` (only with ``surrogate``): PGD is no better for the defender than
      PGD crafted on the surrogate and transferred;
    * ``unbounded_reaches_zero``: PGD with ``eps = 1`` (any image allowed) leaves at most ``tol``;
    * ``more_steps_never_help``: PGD with 5x the steps is no better for the defender.

    ``masked`` is True when any check fails. ``evidence`` holds every accuracy measured and the
    fraction of rows whose input gradient is exactly zero.
    Taught in chapter 8.
    """
    check_attack_inputs(model, x, y)
    eps = check_number("eps", eps, low=0.0, high=1.0, low_open=True)
    steps = check_int("steps", steps, low=1)
    queries = check_int("queries", queries, low=1)
    tol = check_number("tol", tol, low=0.0, high=1.0)
    seed = check_int("seed", seed, low=0)
    if surrogate is not None:
        check_model("surrogate", surrogate)
    evidence = {
        "clean": robust_accuracy(model, x, y, lambda _m, xs, _y: xs.clone()),
        "fgsm": robust_accuracy(model, x, y, lambda m, xs, ys: fgsm(m, xs, ys, eps)),
        "pgd": robust_accuracy(model, x, y, lambda m, xs, ys: pgd(m, xs, ys, eps, steps=steps, seed=seed)),
        "pgd_more_steps": robust_accuracy(model, x, y, lambda m, xs, ys: pgd(m, xs, ys, eps, steps=5 * steps, seed=seed)),
        "pgd_unbounded": robust_accuracy(model, x, y, lambda m, xs, ys: pgd(m, xs, ys, 1.0, steps=steps, seed=seed)),
        "square": robust_accuracy(model, x, y, lambda m, xs, ys: square_attack(m, xs, ys, eps, queries=queries, seed=seed)),
        "zero_gradient_fraction": input_gradient_zero_fraction(model, x, y),
    }
    checks = {
        "iterative_beats_single_step": evidence["pgd"] <= evidence["fgsm"] + tol,
        "whitebox_beats_blackbox": evidence["pgd"] <= evidence["square"] + tol,
        "unbounded_reaches_zero": evidence["pgd_unbounded"] <= tol,
        "more_steps_never_help": evidence["pgd_more_steps"] <= evidence["pgd"] + tol,
    }
    if surrogate is not None:
        evidence["transfer"] = robust_accuracy(
            model, x, y, transfer(surrogate, pgd, eps=eps, steps=steps, seed=seed)
        )
        checks["whitebox_beats_transfer"] = evidence["pgd"] <= evidence["transfer"] + tol
    return MaskingReport(not all(checks.values()), checks, evidence)
