"""Label flipping: the crudest poison, a random fraction of the training labels changed."""

from __future__ import annotations

import torch

from gdsec.poisoning._rows import count_rows
from gdsec.streams import random_stream
from gdsec.validation import check_fraction, check_int, check_labels

__all__ = ["flip_labels"]


def flip_labels(y: torch.Tensor, fraction: float, *, n_classes: int, seed: int = 0) -> torch.Tensor:
    """A copy of ``y`` with exactly ``round(fraction * N)`` labels changed, each to a different class.

    Taught in chapter 3.
    """
    check_int("n_classes", n_classes, low=2)
    check_labels("y", y, n_classes=n_classes)
    check_fraction("fraction", fraction)
    generator = random_stream(seed, "poisoning.flip_labels")
    k = count_rows(fraction, y.shape[0])
    rows = torch.randperm(y.shape[0], generator=generator)[:k]
    shift = torch.randint(1, n_classes, (k,), generator=generator)
    flipped = y.clone()
    flipped[rows] = (y[rows] + shift) % n_classes
    return flipped
