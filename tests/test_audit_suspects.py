"""Tests for gdsec.audit.suspects: the seven models whose truth chapter 10 knows."""

from __future__ import annotations

import pytest
import torch

from gdsec import data, poisoning
from gdsec.audit.suspects import DARK_TRIGGER, SUSPECT_KINDS, Suspects, train_suspects


@pytest.fixture(scope="module")
def small() -> tuple[data.Split, Suspects]:
    digits = data.load_digits()
    split = data.Split(
        digits.x_train[:200], digits.y_train[:200], digits.x_test[:50], digits.y_test[:50]
    )
    return split, train_suspects(split, 2)


@pytest.mark.integration
def test_train_suspects_plants_what_it_says(small) -> None:
    split, suspects = small
    assert list(suspects.audited) == [
        "honest",
        "bright trigger",
        "dark trigger",
        "scaled copy",
        "masked",
        "randomised",
        "adversarially trained",
    ]
    assert suspects.triggers == {"bright": (45, 46, 53, 54), "dark": DARK_TRIGGER}
    for kind in SUSPECT_KINDS:
        assert (
            len(suspects.by_kind[kind])
            == len(suspects.splits[kind])
            == len(suspects.poisoned[kind])
            == 2
        )
    assert (
        suspects.audited["honest"][1] is split
        and suspects.audited["dark trigger"][1] is suspects.splits["dark"][0]
    )
    for kind, value in (("bright", 1.0), ("dark", 0.0)):
        for trained_on, rows in zip(suspects.splits[kind], suspects.poisoned[kind], strict=True):
            assert len(rows) == 10 and torch.equal(rows, rows.sort().values)
            assert (split.y_train[rows] != 0).all() and (trained_on.y_train[rows] == 0).all()
            flat = trained_on.x_train.flatten(1)
            assert flat[rows][:, list(suspects.triggers[kind])].eq(value).all()
            others = torch.ones(len(flat), dtype=torch.bool)
            others[rows] = False
            assert torch.equal(flat[others], split.x_train.flatten(1)[others]), (
                "only the poisoned rows change"
            )
    assert not torch.equal(suspects.poisoned["dark"][0], suspects.poisoned["dark"][1]), (
        "each seed draws its own rows"
    )
    assert (
        len(suspects.poisoned["honest"][0]) == 0
        and suspects.splits["honest"][0].x_train is split.x_train
    )


def test_the_dark_stamp_is_poisoning_stamp(small) -> None:
    split, suspects = small
    rows = suspects.poisoned["dark"][0]
    expected = poisoning.stamp(split.x_train[rows], DARK_TRIGGER, 0.0)
    assert torch.equal(suspects.splits["dark"][0].x_train[rows], expected)


def test_train_suspects_rejects_bad_arguments() -> None:
    digits = data.load_digits()
    with pytest.raises(ValueError, match="split"):
        train_suspects((digits.x_train, digits.y_train))
    with pytest.raises(ValueError, match="split"):
        train_suspects(
            data.Split(
                digits.x_train.flatten(1)[:, :10], digits.y_train, digits.x_test, digits.y_test
            )
        )
    with pytest.raises(ValueError, match="n_seeds"):
        train_suspects(digits, 0)
    with pytest.raises(ValueError, match="eps"):
        train_suspects(digits, 1, eps=0.0)
