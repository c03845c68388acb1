"""Unit and property tests for gdsec.poisoning.backdoor.

The trigger, planting it, its success, rebuilding and stamping it.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gdsec import data, models, poisoning, train


def test_apply_trigger_stamps_corner_only_and_keeps_input(digits: data.Split) -> None:
    x = digits.x_test[:5]
    before = x.clone()
    stamped = poisoning.apply_trigger(x)
    assert torch.equal(x, before)
    assert stamped.shape == x.shape and stamped.dtype == x.dtype
    changed = (stamped != x).any(dim=0)[0]
    assert changed[:5].sum() == 0 and changed[:, :5].sum() == 0
    assert torch.all(stamped[:, 0, 5:7, 5:7] == 1.0)
    assert 0 <= stamped.min() and stamped.max() <= 1


def test_apply_trigger_works_on_flat_rows(digits: data.Split) -> None:
    flat = digits.x_test[:3].reshape(3, 64)
    assert torch.equal(
        poisoning.apply_trigger(flat), poisoning.apply_trigger(digits.x_test[:3]).reshape(3, 64)
    )


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(3, 5),
        torch.full((2, 1, 8, 8), 2.0),
        torch.zeros(2, 1, 8, 8, dtype=torch.int64),
        torch.zeros(4),
    ],
)
def test_apply_trigger_rejects_bad_inputs(bad: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="x"):
        poisoning.apply_trigger(bad)


@settings(max_examples=25, deadline=None)
@given(fraction=st.floats(0.0, 0.5), target=st.integers(0, 9), seed=st.integers(0, 100))
def test_add_backdoor_poisons_exact_rows(fraction: float, target: int, seed: int) -> None:
    x = torch.rand(60, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    y = torch.arange(60) % 10
    x0, y0 = x.clone(), y.clone()
    x_p, y_p, index = poisoning.add_backdoor(x, y, target=target, fraction=fraction, seed=seed)
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert len(index) == round(fraction * 60)
    assert torch.all(index[1:] > index[:-1])
    assert torch.all(y[index] != target) and torch.all(y_p[index] == target)
    untouched = torch.ones(60, dtype=torch.bool)
    untouched[index] = False
    assert torch.equal(x_p[untouched], x[untouched]) and torch.equal(y_p[untouched], y[untouched])
    if len(index):
        assert torch.equal(x_p[index], poisoning.apply_trigger(x[index]))


def test_add_backdoor_default_seed_is_zero_and_seed_matters() -> None:
    x, y = (
        torch.rand(100, 1, 8, 8, generator=torch.Generator().manual_seed(0)),
        torch.arange(100) % 10,
    )
    default = poisoning.add_backdoor(x, y, target=0, fraction=0.2)[2]
    assert torch.equal(default, poisoning.add_backdoor(x, y, target=0, fraction=0.2, seed=0)[2])
    assert not torch.equal(default, poisoning.add_backdoor(x, y, target=0, fraction=0.2, seed=1)[2])


def test_add_backdoor_rejects_a_target_outside_the_classes_present() -> None:
    x, y = torch.rand(100, 1, 8, 8), torch.arange(100) % 10
    with pytest.raises(ValueError, match="target must be one of the classes present"):
        poisoning.add_backdoor(x, y, target=10, fraction=0.05)
    with pytest.raises(ValueError, match="target"):
        poisoning.add_backdoor(x, y % 5 * 2, target=3, fraction=0.05)  # classes 0, 2, 4, 6, 8 only


def test_add_backdoor_rejects_bad_arguments() -> None:
    x, y = torch.rand(10, 1, 8, 8), torch.arange(10) % 2
    with pytest.raises(ValueError, match="fraction"):
        poisoning.add_backdoor(x, y, target=0, fraction=0.9)
    with pytest.raises(ValueError, match="fraction"):
        poisoning.add_backdoor(x, y, target=0, fraction=-0.1)
    with pytest.raises(ValueError, match="target"):
        poisoning.add_backdoor(x, y, target=-1, fraction=0.1)
    with pytest.raises(ValueError, match="y"):
        poisoning.add_backdoor(x, y[:5], target=0, fraction=0.1)
    with pytest.raises(ValueError, match="seed"):
        poisoning.add_backdoor(x, y, target=0, fraction=0.1, seed=-2)


@pytest.mark.integration
def test_backdoor_trains_in_and_is_measured(digits: data.Split) -> None:
    x_p, y_p, _ = poisoning.add_backdoor(digits.x_train, digits.y_train, target=0, fraction=0.1)
    model = models.logistic_regression(seed=0)
    train.train(model, x_p, y_p, lr=0.5, epochs=30, batch_size=64, progress=False)
    assert train.accuracy(model, digits.x_test, digits.y_test) > 0.85
    assert poisoning.attack_success_rate(model, digits.x_test, digits.y_test, target=0) > 0.7
    clean = models.logistic_regression(seed=0)
    train.train(
        clean, digits.x_train, digits.y_train, lr=0.5, epochs=30, batch_size=64, progress=False
    )
    assert poisoning.attack_success_rate(clean, digits.x_test, digits.y_test, target=0) < 0.2


def test_attack_success_rate_rejects_a_test_set_of_only_the_target(
    digits_mlp: torch.nn.Module,
) -> None:
    with pytest.raises(ValueError, match="target"):
        poisoning.attack_success_rate(
            digits_mlp, torch.zeros(3, 1, 8, 8), torch.zeros(3, dtype=torch.long), target=0
        )


def test_rebuild_trigger_finds_either_sign_and_stamp_sets_the_mean() -> None:
    generator = torch.Generator().manual_seed(0)
    x = 0.3 + 0.2 * torch.rand(60, 1, 2, 3, generator=generator)
    y = torch.arange(60) % 3
    x[y == 2, 0, 0, 1] = 0.0  # ink removed
    x[y == 2, 0, 1, 1] = 0.95  # ink added
    features, values = poisoning.rebuild_trigger(
        x, y, torch.nonzero(y == 2).flatten(), 2, max_features=4
    )
    assert features.tolist() == [1, 4] and values.tolist() == pytest.approx([0.0, 0.95])
    before = x.clone()
    stamped = poisoning.stamp(x[:3], features, values)
    assert torch.equal(x, before)
    assert stamped.shape == (3, 1, 2, 3)
    assert stamped[:, 0, 0, 1].eq(0).all() and stamped[:, 0, 1, 1].eq(0.95).all()
    others = torch.ones(6, dtype=torch.bool)
    others[features] = False
    assert torch.equal(stamped.flatten(1)[:, others], x[:3].flatten(1)[:, others])
    assert poisoning.stamp(x[:3], [0, 5], 0.25).flatten(1)[:, [0, 5]].eq(0.25).all()


def test_rebuild_trigger_keeps_only_features_within_half_of_the_largest() -> None:
    x, y = torch.full((20, 4), 0.5), torch.arange(20) % 2
    x[y == 1, 0] = 1.0  # difference 0.5
    x[y == 1, 1] = 0.8  # 0.3: kept
    x[y == 1, 2] = 0.7  # 0.2: under half of 0.5, dropped
    features, _ = poisoning.rebuild_trigger(x, y, torch.nonzero(y == 1).flatten(), 1)
    assert features.tolist() == [0, 1]
    features, _ = poisoning.rebuild_trigger(
        x, y, torch.nonzero(y == 1).flatten(), 1, max_features=1
    )
    assert features.tolist() == [0]


def test_rebuild_trigger_and_stamp_reject_bad_arguments() -> None:
    x, y = torch.rand(40, 1, 4, 4), torch.arange(40) % 4
    flagged = torch.nonzero(y == 2).flatten()[:5]
    with pytest.raises(ValueError, match="flagged"):
        poisoning.rebuild_trigger(x, y, flagged, 1)
    with pytest.raises(ValueError, match="max_features"):
        poisoning.rebuild_trigger(x, y, flagged, 2, max_features=0)
    with pytest.raises(ValueError, match="y"):
        poisoning.rebuild_trigger(x, y[:-1], flagged, 2)
    with pytest.raises(ValueError, match="values"):
        poisoning.stamp(x, [0], 2.0)
    with pytest.raises(ValueError, match="values"):
        poisoning.stamp(x, [0, 1], torch.tensor([0.5, 0.5, 0.5]))
    with pytest.raises(ValueError, match="features"):
        poisoning.stamp(x, [16], 0.0)
    with pytest.raises(ValueError, match="features"):
        poisoning.stamp(x, torch.tensor([0.5]), 0.0)


def test_the_corner_trigger_is_one_stamp_and_any_trigger_can_be_scored(digits: data.Split) -> None:
    x = digits.x_test[:20]
    features = poisoning.corner_trigger(x.shape[1:])
    assert features.tolist() == [45, 46, 53, 54]
    assert torch.equal(poisoning.corner_trigger((64,)), features)
    assert torch.equal(poisoning.apply_trigger(x), poisoning.stamp(x, features, 1.0))
    model = models.mlp(64, 10, hidden=8, seed=0)
    y = digits.y_test[:20]
    default = poisoning.attack_success_rate(model, x, y, target=0)
    same = poisoning.attack_success_rate(model, x, y, target=0, trigger=(features, 1.0))
    dark = poisoning.attack_success_rate(model, x, y, target=0, trigger=(features, 0.0))
    keep = y != 0
    expected = (train.predict(model, poisoning.stamp(x[keep], features, 0.0)) == 0).float().mean()
    assert default == same and dark == pytest.approx(float(expected))
    with pytest.raises(ValueError, match="larger than"):
        poisoning.corner_trigger((1, 2, 2))
