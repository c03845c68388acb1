"""Gradient-free (query) attacks: they only read the model's logits, never its gradient.

Because they never differentiate the model, a defence that breaks, hides or saturates gradients
does not slow them down; that is why chapter 8 uses them to unmask gradient masking.

* :func:`square_attack` — random search with square-shaped L-infinity updates, accepting a change
  only if it lowers the margin (Andriushchenko et al. 2020).
* :func:`spsa` — gradient estimates from random +/- perturbations (simultaneous perturbation
  stochastic approximation, Spall 1992), used as an attack by Uesato et al. (2018).

Both stay in the L-infinity ball of radius ``eps``; the contract is applied by ``attack_contract``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gdsec.attacks._core import (
    attack_contract,
    checked_logits,
    keep_best,
    margin,
    project,
)
from gdsec.attacks.settings import optional_positive, positive, positive_int, seed_value
from gdsec.streams import random_stream
from gdsec.validation import check_number


def _as_images(x: torch.Tensor) -> torch.Tensor:
    """View any batch as (N, C, H, W): tabular rows become 1 x d images, extra axes become channels."""
    if x.dim() == 2:
        return x.reshape(x.shape[0], 1, 1, x.shape[1])
    if x.dim() == 3:
        return x.reshape(x.shape[0], 1, x.shape[1], x.shape[2])
    return x.reshape(x.shape[0], -1, x.shape[-2], x.shape[-1])


def _square_fraction(i: int, steps: int, p_init: float) -> float:
    """The paper's schedule for the square's share of the image, rescaled to ``steps`` iterations."""
    step = int(i / steps * 10000)
    halvings = sum(step > b for b in (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000))
    return p_init / 2**halvings


def _signs(shape: tuple[int, ...], generator: torch.Generator, x: torch.Tensor) -> torch.Tensor:
    """Random +-1 entries of ``shape``, drawn on the generator's device, on ``x``'s device and dtype."""
    bits = torch.randint(0, 2, shape, generator=generator, device=generator.device)
    return bits.to(device=x.device, dtype=x.dtype) * 2 - 1


def _corner(high: int, n: int, generator: torch.Generator, x: torch.Tensor) -> torch.Tensor:
    """``n`` random offsets in [0, high), shaped (n, 1, 1, 1), on ``x``'s device."""
    offsets = torch.randint(0, high, (n, 1, 1, 1), generator=generator, device=generator.device)
    return offsets.to(x.device)


def _fraction(name: str, value: object) -> float:
    """A number in (0, 1]."""
    return check_number(name, value, low=0.0, high=1.0, low_open=True)


@attack_contract(bounded=True, steps=positive_int, p_init=_fraction, seed=seed_value)
@torch.no_grad()
def square_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    steps: int = 1000,
    p_init: float = 0.3,
    seed: int = 0,
) -> torch.Tensor:
    """L-infinity Square Attack: random square updates of +/- ``eps``, kept when the margin drops.

    Runs ``steps`` iterations of one query (forward pass) per row each, the first the start (rows
    that are already misclassified stop querying). Works on any input shape.
    Taught in chapters 5 and 8.
    """
    generator = random_stream(seed, "attacks.square_attack")
    images = _as_images(x)
    n, channels, height, width = images.shape
    stripes = _signs((n, channels, 1, width), generator, x)
    best = project(images, images + eps * stripes, eps)
    best_margin = margin(checked_logits(model, best.reshape(x.shape)), y)
    rows_h = torch.arange(height, device=x.device).reshape(1, 1, height, 1)
    cols_w = torch.arange(width, device=x.device).reshape(1, 1, 1, width)
    for i in range(steps - 1):
        active = (best_margin > 0).nonzero().squeeze(1)
        if len(active) == 0:
            break
        side = max(1, round(math.sqrt(_square_fraction(i, steps, p_init) * height * width)))
        side_h, side_w = min(side, height), min(side, width)
        top = _corner(height - side_h + 1, len(active), generator, x)
        left = _corner(width - side_w + 1, len(active), generator, x)
        window = (
            (rows_h >= top) & (rows_h < top + side_h) & (cols_w >= left) & (cols_w < left + side_w)
        )
        signs = _signs((len(active), channels, 1, 1), generator, x)
        base = images[active]
        candidate = project(base, torch.where(window, base + eps * signs, best[active]), eps)
        new_margin = margin(
            checked_logits(model, candidate.reshape(len(active), *x.shape[1:])), y[active]
        )
        keep_best(best, best_margin, candidate, new_margin, active)
    return best.reshape(x.shape)


@attack_contract(
    bounded=True,
    steps=positive_int,
    draws=positive_int,
    delta=positive,
    alpha=optional_positive,
    seed=seed_value,
)
@torch.no_grad()
def spsa(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    steps: int = 50,
    draws: int = 32,
    delta: float = 0.01,
    alpha: float | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """SPSA attack: estimate the margin's gradient from ``draws`` random +/- ``delta`` probes per
    step, take a signed step of ``alpha`` (default ``eps / 10``) downhill on the margin, project.

    Costs ``2 * draws`` queries per row and step. Per row the iterate with the smallest margin
    seen is returned, so more steps never weaken it.
    Taught in chapter 5.
    """
    alpha = eps / 10 if alpha is None else alpha
    generator = random_stream(seed, "attacks.spsa")
    n, shape = x.shape[0], x.shape[1:]
    current, best = x.clone(), x.clone()
    best_margin = margin(checked_logits(model, x), y)
    labels = y.repeat_interleave(2 * draws)
    for _ in range(steps):
        probes = _signs((n, draws, *shape), generator, x)
        both = torch.cat(
            [current[:, None] + delta * probes, current[:, None] - delta * probes], dim=1
        )
        values = margin(checked_logits(model, both.reshape(n * 2 * draws, *shape)), labels).reshape(
            n, 2 * draws
        )
        slope = (values[:, :draws] - values[:, draws:]) / (2 * delta)
        estimate = (slope.reshape(n, draws, *([1] * len(shape))) * probes).mean(dim=1)
        current = project(x, current - alpha * estimate.sign(), eps)
        keep_best(best, best_margin, current, margin(checked_logits(model, current), y))
    return best
