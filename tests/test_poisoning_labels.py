"""Unit and property tests for gdsec.poisoning.labels: label flips."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gdsec import poisoning


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 200),
    fraction=st.floats(0.0, 1.0),
    n_classes=st.integers(2, 10),
    seed=st.integers(0, 1000),
)
def test_flip_labels_changes_exactly_round_fraction_n(
    n: int, fraction: float, n_classes: int, seed: int
) -> None:
    y = torch.randint(0, n_classes, (n,), generator=torch.Generator().manual_seed(seed))
    before = y.clone()
    flipped = poisoning.flip_labels(y, fraction, n_classes=n_classes, seed=seed)
    assert torch.equal(y, before)
    assert flipped.dtype == y.dtype and flipped.shape == y.shape
    assert int((flipped != y).sum()) == round(fraction * n)
    assert flipped.min() >= 0 and flipped.max() < n_classes


def test_flip_labels_is_deterministic_and_seed_dependent() -> None:
    y = torch.arange(100) % 10
    a = poisoning.flip_labels(y, 0.3, n_classes=10, seed=1)
    assert torch.equal(a, poisoning.flip_labels(y, 0.3, n_classes=10, seed=1))
    assert not torch.equal(a, poisoning.flip_labels(y, 0.3, n_classes=10, seed=2))
    assert torch.equal(
        poisoning.flip_labels(y, 0.3, n_classes=10),
        poisoning.flip_labels(y, 0.3, n_classes=10, seed=0),
    )


def test_flip_labels_leaves_the_global_rng_alone() -> None:
    state = torch.get_rng_state()
    poisoning.flip_labels(torch.arange(50) % 10, 0.5, n_classes=10, seed=3)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fraction": -0.1}, "fraction"),
        ({"fraction": 1.5}, "fraction"),
        ({"fraction": float("nan")}, "fraction"),
        ({"n_classes": 1}, "n_classes"),
        ({"n_classes": 3}, "y must be in"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_flip_labels_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    args = {"fraction": 0.1, "n_classes": 10, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=match):
        poisoning.flip_labels(torch.arange(10), args.pop("fraction"), **args)


def test_flip_labels_rejects_float_labels() -> None:
    with pytest.raises(ValueError, match="y"):
        poisoning.flip_labels(torch.zeros(5), 0.2, n_classes=2)
