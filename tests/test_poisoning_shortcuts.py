"""Tests for gdsec.poisoning.shortcuts: class codes planted in the border, and the border shuffle."""

from __future__ import annotations

import pytest
import torch

from gdsec import data, poisoning

INNER = torch.zeros(8, 8, dtype=torch.bool)
INNER[1:7, 1:7] = True


def test_plant_shortcut_stamps_one_code_per_class_on_the_border_only(digits: data.Split) -> None:
    x, y = digits.x_train[:40], digits.y_train[:40]
    before = x.clone()
    planted = poisoning.plant_shortcut(x, y, pixels=6, seed=0)
    assert torch.equal(x, before)  # input untouched
    assert planted.shape == x.shape and planted.min() >= 0 and planted.max() <= 1
    assert torch.equal(planted[:, 0][:, INNER], x[:, 0][:, INNER])  # only the border can change
    codes = {}
    for label in y.unique().tolist():
        rows = planted.reshape(40, -1)[y == label]
        shared = (rows == 1.0).all(dim=0) & ~INNER.flatten()
        assert shared.sum() >= 6  # the class code is set on every row of the class
        codes[label] = shared
    assert (
        len({tuple(c.nonzero().flatten().tolist()) for c in codes.values()}) > 1
    )  # classes get different codes
    assert torch.equal(planted, poisoning.plant_shortcut(x, y, pixels=6))  # seed defaults to 0
    assert not torch.equal(planted, poisoning.plant_shortcut(x, y, pixels=6, seed=1))


def test_shuffle_border_keeps_the_inside_and_moves_the_border(digits: data.Split) -> None:
    planted = poisoning.plant_shortcut(digits.x_train[:40], digits.y_train[:40], pixels=6, seed=0)
    before = planted.clone()
    shuffled = poisoning.shuffle_border(planted, seed=0)
    assert torch.equal(planted, before)
    assert torch.equal(shuffled[:, 0][:, INNER], planted[:, 0][:, INNER])
    assert not torch.equal(shuffled[:, 0][:, ~INNER], planted[:, 0][:, ~INNER])
    border_rows = {tuple(r.tolist()) for r in planted[:, 0][:, ~INNER]}
    assert all(
        tuple(r.tolist()) in border_rows for r in shuffled[:, 0][:, ~INNER]
    )  # borders are other rows'


@pytest.mark.parametrize(
    "call",
    [
        lambda: poisoning.plant_shortcut(torch.zeros(4, 64), torch.zeros(4, dtype=torch.long)),
        lambda: poisoning.plant_shortcut(torch.zeros(4, 1, 8, 8), torch.full((4,), 10)),
        lambda: poisoning.plant_shortcut(
            torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), pixels=0
        ),
        lambda: poisoning.plant_shortcut(
            torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), pixels=29
        ),
        lambda: poisoning.plant_shortcut(
            torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), seed=-1
        ),
        lambda: poisoning.shuffle_border(torch.zeros(4, 1, 2, 2)),
        lambda: poisoning.shuffle_border(torch.zeros(4, 1, 8, 8), seed=-1),
        lambda: poisoning.shuffle_border(torch.full((4, 1, 8, 8), float("nan"))),
    ],
)
def test_bad_arguments_raise_value_error(call) -> None:
    with pytest.raises(ValueError):
        call()
