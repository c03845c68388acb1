"""Gradient-masking "defences", one per failure mode of Athalye et al. (2018).

* shattered gradients: :class:`Quantize` (rounding has zero derivative almost everywhere);
* stochastic gradients: :class:`RandomQuantize` (noise, then rounding; a fresh draw per call);
* vanishing gradients: :class:`Temperature` (huge logits saturate the softmax, the effect of
  defensive distillation at test time);
* exploding gradients from an iterative computation: :class:`Purifier` (projects the input onto the
  range of a :class:`Generator` by a short unrolled optimisation, in the manner of Defense-GAN).

Two traps, built to trip the sanity checks that the defences above do not: :class:`OffGridSaturation`
(honest on inputs on the data's grey-level grid, saturated everywhere else: a random start lands in
the mask, a single step from the clean input does not) and :class:`FarSaturation` (saturated farther
than ``radius`` from every reference input: a larger budget lands in the mask).
"""

from __future__ import annotations

import torch
from torch import nn

from gdsec.streams import random_stream
from gdsec.validation import (
    check_choice,
    check_int,
    check_model,
    check_number,
    check_unit_tensor,
)

__all__ = [
    "DEFENCES",
    "FarSaturation",
    "Generator",
    "OffGridSaturation",
    "Purifier",
    "Quantize",
    "RandomQuantize",
    "Temperature",
    "defend",
    "fit_generator",
]

DEFENCES = ("quantize", "temperature", "random", "purify")


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
    the same sequence of draws for the same seed.
    Taught in chapter 8.
    """

    def __init__(self, levels: int = 3, noise: float = 0.2, *, seed: int = 0) -> None:
        super().__init__()
        self.levels = check_int("levels", levels, low=2, high=256)
        self.noise = check_number("noise", noise, low=0.0, high=1.0)
        self.generator = random_stream(seed, "masking.random_quantise")

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


class Generator(nn.Module):
    """A linear generator ``h(z) = clip(mean + basis @ z)`` of inputs shaped ``shape``, with its encoder.

    ``basis`` has orthonormal columns, so :meth:`encode` (the least-squares latent code) and
    :meth:`forward` together project onto the generator's range.
    Taught in chapter 8.
    """

    def __init__(self, mean: torch.Tensor, basis: torch.Tensor, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("basis", basis.detach().clone())
        self.shape = tuple(shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The input ``h(z)`` for latent codes ``z`` of shape (N, components)."""
        return (self.mean + z @ self.basis.T).clamp(0.0, 1.0).reshape(len(z), *self.shape)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latent code minimising ``||mean + basis @ z - x||`` (closed form, differentiable)."""
        return (x.reshape(len(x), -1) - self.mean) @ self.basis


def fit_generator(x: torch.Tensor, *, components: int = 20) -> Generator:
    """The PCA generator of ``x``: its mean and top ``components`` principal directions.

    Taught in chapter 8.
    """
    x = check_unit_tensor("x", x, min_dim=2)
    flat = x.reshape(len(x), -1)
    components = check_int("components", components, low=1, high=min(flat.shape))
    mean = flat.mean(0)
    basis = torch.linalg.svd(flat - mean, full_matrices=False).Vh[:components].T
    return Generator(mean, basis, tuple(x.shape[1:]))


class Purifier(nn.Module):
    """Project inputs onto ``generator``'s range by ``steps`` unrolled, saturated latent steps.

    From ``z = 0``, step ``t`` moves ``z`` by ``-step_size * decay**t * tanh(gain * grad)``, the
    gradient of ``||h(z) - x||^2``; the output is ``h(z)``. The value lands within a few hundredths
    of the exact projection, but the derivative through the unrolled loop is a product of ``steps``
    Jacobians that explodes (Athalye et al.'s exploding gradients of an iterative defence).
    Taught in chapter 8.
    """

    def __init__(
        self,
        generator: Generator,
        *,
        steps: int = 30,
        step_size: float = 0.5,
        decay: float = 0.9,
        gain: float = 200.0,
    ) -> None:
        super().__init__()
        if not isinstance(generator, Generator):
            raise ValueError(
                f"generator must be a gdsec.masking.Generator (see fit_generator), got {type(generator).__name__}"
            )
        self.generator = generator
        self.steps = check_int("steps", steps, low=1)
        self.step_size = check_number("step_size", step_size, low=0.0, low_open=True)
        self.decay = check_number("decay", decay, low=0.0, high=1.0, low_open=True)
        self.gain = check_number("gain", gain, low=0.0, low_open=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The purified input ``h(z_T)``."""
        code = self.generator.encode(
            x
        )  # orthonormal basis: grad_z ||mean + basis z - x||^2 = 2 (z - code)
        z = torch.zeros_like(code)
        for t in range(self.steps):
            z = z - self.step_size * self.decay**t * torch.tanh(self.gain * 2 * (z - code))
        return self.generator(z).reshape(x.shape)


class OffGridSaturation(nn.Module):
    """``classifier``'s logits, times ``temperature`` when any input value is off the ``levels``-level grid.

    Same predictions everywhere; honest gradients on the grid (the clean digits), none off it.
    Taught in chapter 8.
    """

    def __init__(
        self, classifier: nn.Module, *, levels: int = 17, temperature: float = 1e4
    ) -> None:
        super().__init__()
        self.classifier = check_model("classifier", classifier)
        self.levels = check_int("levels", levels, low=2, high=256)
        self.temperature = check_number("temperature", temperature, low=0.0, low_open=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, saturated on off-grid rows."""
        scaled = x.reshape(len(x), -1) * (self.levels - 1)
        off = ((scaled - scaled.round()).abs() > 1e-4).any(1)
        return self.classifier(x) * torch.where(off, self.temperature, 1.0).unsqueeze(1)


class FarSaturation(nn.Module):
    """``classifier``'s logits, times ``temperature`` farther than ``radius`` (L-inf) from every ``reference`` row.

    Same predictions everywhere; honest gradients near the reference inputs, none far from them.
    Taught in chapter 8.
    """

    def __init__(
        self,
        classifier: nn.Module,
        reference: torch.Tensor,
        *,
        radius: float = 0.2,
        temperature: float = 1e4,
    ) -> None:
        super().__init__()
        self.classifier = check_model("classifier", classifier)
        self.register_buffer(
            "reference",
            check_unit_tensor("reference", reference, min_dim=2)
            .detach()
            .reshape(len(reference), -1)
            .clone(),
        )
        self.radius = check_number("radius", radius, low=0.0, low_open=True)
        self.temperature = check_number("temperature", temperature, low=0.0, low_open=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, saturated on rows far from every reference row."""
        distance = torch.cdist(x.reshape(len(x), -1), self.reference, p=float("inf")).min(1).values
        return self.classifier(x) * torch.where(
            distance > self.radius, self.temperature, 1.0
        ).unsqueeze(1)


def defend(
    classifier: nn.Module,
    kind: str,
    *,
    levels: int = 3,
    temperature: float = 1000.0,
    noise: float = 0.2,
    generator: Generator | None = None,
    purifier_steps: int = 30,
    seed: int = 0,
) -> nn.Sequential:
    """Wrap ``classifier`` in a masking defence ``kind`` (one of ``DEFENCES``); the classifier is shared.

    ``seed`` seeds the noise of ``"random"``; ``"purify"`` needs ``generator`` (see :func:`fit_generator`)
    and unrolls ``purifier_steps`` steps.
    Taught in chapter 8.
    """
    check_model("classifier", classifier)
    check_choice("kind", kind, DEFENCES)
    if kind == "quantize":
        return nn.Sequential(Quantize(levels), classifier)
    if kind == "random":
        return nn.Sequential(RandomQuantize(levels, noise, seed=seed), classifier)
    if kind == "purify":
        if generator is None:
            raise ValueError(
                "generator must be given for kind='purify' (build one with masking.fit_generator)"
            )
        return nn.Sequential(Purifier(generator, steps=purifier_steps), classifier)
    return nn.Sequential(classifier, Temperature(temperature))
