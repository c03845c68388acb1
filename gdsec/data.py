"""Bundled data: scikit-learn's 8x8 digits (the full split and two-digit subsets) and its breast-cancer
table. Nothing is downloaded."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from sklearn import datasets
from sklearn.model_selection import train_test_split

from gdsec.validation import check_int, check_number

__all__ = ["Split", "load_breast_cancer", "load_digits", "two_digits"]


class Split(NamedTuple):
    """A train/test split of tensors: images (N, 1, 8, 8) or features (N, d), labels int64.

    Taught in chapter 1.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_digits(*, test_size: float = 0.25, seed: int = 0) -> Split:
    """Load the 1,797 bundled 8x8 digits as (N, 1, 8, 8) float32 in [0, 1], stratified split.

    Taught in chapter 1.
    """
    check_number("test_size", test_size, low=0.0, high=1.0, low_open=True, high_open=True)
    check_int("seed", seed, low=0)
    bunch = datasets.load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=test_size, random_state=seed, stratify=labels
    )
    return Split(*(torch.from_numpy(np.ascontiguousarray(a)) for a in (x_tr, y_tr, x_te, y_te)))


def two_digits(a: int = 3, b: int = 8, *, test_size: float = 0.25, seed: int = 0) -> Split:
    """The digits split restricted to classes ``a`` and ``b``, relabelled 0 (``a``) and 1 (``b``).

    Taught in chapter 3.
    """
    check_int("a", a, low=0, high=9)
    check_int("b", b, low=0, high=9)
    if a == b:
        raise ValueError(f"a and b must be different digits, got {a} and {b}")
    split = load_digits(test_size=test_size, seed=seed)
    parts = []
    for x, y in ((split.x_train, split.y_train), (split.x_test, split.y_test)):
        keep = (y == a) | (y == b)
        parts += [x[keep].clone(), (y[keep] == b).long()]
    return Split(parts[0], parts[1], parts[2], parts[3])


def load_breast_cancer(*, test_size: float = 0.25, seed: int = 0) -> Split:
    """The 569 bundled breast-cancer rows (30 features, 2 classes) as (N, 30) float32 in [0, 1].

    Stratified split; each feature is min-max scaled with the training rows' minimum and maximum,
    and the test rows are clipped to [0, 1]. A tabular, two-class set for the audit's bench.
    Used in chapter 10.
    """
    check_number("test_size", test_size, low=0.0, high=1.0, low_open=True, high_open=True)
    check_int("seed", seed, low=0)
    bunch = datasets.load_breast_cancer()
    x_tr, x_te, y_tr, y_te = train_test_split(
        bunch.data,
        bunch.target.astype(np.int64),
        test_size=test_size,
        random_state=seed,
        stratify=bunch.target,
    )
    low, span = x_tr.min(0), np.maximum(x_tr.max(0) - x_tr.min(0), 1e-12)
    x_tr, x_te = ((np.clip((a - low) / span, 0.0, 1.0)).astype(np.float32) for a in (x_tr, x_te))
    return Split(*(torch.from_numpy(np.ascontiguousarray(a)) for a in (x_tr, y_tr, x_te, y_te)))
