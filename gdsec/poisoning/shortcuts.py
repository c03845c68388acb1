"""Shortcut poisoning: class codes hidden in the image border, and the ablation that breaks them."""

from __future__ import annotations

import torch

from gdsec.streams import random_stream
from gdsec.validation import check_batch, check_int, check_labels

__all__ = ["plant_shortcut", "shuffle_border"]


def _check_images(x: object) -> torch.Tensor:
    """Return ``x`` if it is a floating-point image batch (N, 1, H, W) of at least 3 x 3 pixels."""
    check_batch("x", x)
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(
            f"x must be a floating-point image batch of shape (N, 1, H, W), got {tuple(x.shape)}"
        )
    if x.shape[-1] < 3 or x.shape[-2] < 3:
        raise ValueError(f"x must have images of at least 3 x 3 pixels, got shape {tuple(x.shape)}")
    return x


def _border_index(x: torch.Tensor) -> torch.Tensor:
    """Flat indices of the outermost pixels of an (N, C, H, W) image batch's first channel."""
    height, width = x.shape[-2], x.shape[-1]
    return torch.tensor(
        [
            i
            for i in range(height * width)
            if i // width in (0, height - 1) or i % width in (0, width - 1)
        ]
    )


def plant_shortcut(
    x: torch.Tensor, y: torch.Tensor, *, pixels: int = 6, n_classes: int = 10, seed: int = 0
) -> torch.Tensor:
    """A crafted copy of images ``x`` (N, 1, H, W) where each class's secret code (``pixels`` border
    pixels set to 1) is stamped on every row according to its label ``y``: a shortcut that descent
    prefers to the real features. Stamping wrong labels' codes at test time steers the model.

    Taught in chapter 7.
    """
    _check_images(x)
    check_int("n_classes", n_classes, low=2)
    check_labels("y", y, n=x.shape[0], n_classes=n_classes)
    border = _border_index(x)
    check_int("pixels", pixels, low=1, high=len(border))
    generator = random_stream(seed, "poisoning.plant_shortcut")
    codes = torch.stack(
        [
            border[torch.randperm(len(border), generator=generator)[:pixels]]
            for _ in range(n_classes)
        ]
    )
    planted = x.detach().clone()
    flat = planted.reshape(x.shape[0], -1)
    flat[torch.arange(x.shape[0])[:, None], codes[y]] = 1.0
    return planted


def shuffle_border(x: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """A copy of images ``x`` (N, 1, H, W) whose outermost ring of pixels is taken from another, randomly
    chosen row: an ablation probe that keeps the pixel statistics but breaks any label code hidden there.

    Taught in chapter 7.
    """
    _check_images(x)
    generator = random_stream(seed, "poisoning.shuffle_border")
    border = _border_index(x)
    source = torch.randperm(x.shape[0], generator=generator)
    shuffled = x.detach().clone()
    flat = shuffled.reshape(x.shape[0], -1)
    flat[:, border] = x.detach().reshape(x.shape[0], -1)[source][:, border]
    return shuffled
