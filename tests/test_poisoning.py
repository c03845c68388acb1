"""Unit and property tests for gdsec.poisoning: label flips, crafted poison, backdoors, detection."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gdsec import data, models, poisoning, train


@pytest.fixture(scope="module")
def digits() -> data.Split:
    return data.load_digits()


# ---------------------------------------------------------------- flip_labels


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 200),
    fraction=st.floats(0.0, 1.0),
    n_classes=st.integers(2, 10),
    seed=st.integers(0, 1000),
)
def test_flip_labels_changes_exactly_round_fraction_n(n: int, fraction: float, n_classes: int, seed: int) -> None:
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


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fraction": -0.1}, "fraction"),
        ({"fraction": 1.5}, "fraction"),
        ({"fraction": float("nan")}, "fraction"),
        ({"n_classes": 1}, "n_classes"),
        ({"n_classes": 3}, "y must be in"),
        ({"seed": -1}, "seed"),
    ],
)
def test_flip_labels_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    args = {"fraction": 0.1, "n_classes": 10, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=match):
        poisoning.flip_labels(torch.arange(10), args.pop("fraction"), **args)


def test_flip_labels_rejects_float_labels() -> None:
    with pytest.raises(ValueError, match="y"):
        poisoning.flip_labels(torch.zeros(5), 0.2, n_classes=2)


# ---------------------------------------------------------------- triggers and backdoors


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
    assert torch.equal(poisoning.apply_trigger(flat), poisoning.apply_trigger(digits.x_test[:3]).reshape(3, 64))


@pytest.mark.parametrize(
    "bad",
    [torch.zeros(3, 5), torch.full((2, 1, 8, 8), 2.0), torch.zeros(2, 1, 8, 8, dtype=torch.int64), torch.zeros(4)],
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


def test_backdoor_trains_in_and_is_measured(digits: data.Split) -> None:
    x_p, y_p, _ = poisoning.add_backdoor(digits.x_train, digits.y_train, target=0, fraction=0.1)
    model = models.logistic_regression(seed=0)
    train.train(model, x_p, y_p, lr=0.5, epochs=30, batch_size=64, progress=False)
    assert train.accuracy(model, digits.x_test, digits.y_test) > 0.85
    assert poisoning.attack_success_rate(model, digits.x_test, digits.y_test, target=0) > 0.7
    clean = models.logistic_regression(seed=0)
    train.train(clean, digits.x_train, digits.y_train, lr=0.5, epochs=30, batch_size=64, progress=False)
    assert poisoning.attack_success_rate(clean, digits.x_test, digits.y_test, target=0) < 0.2


# ---------------------------------------------------------------- crafted poison


def test_craft_poison_beats_random_flips_and_leaves_model_alone() -> None:
    split = data.two_digits(3, 8)
    perm = torch.randperm(len(split.x_train), generator=torch.Generator().manual_seed(0))
    train_rows, val_rows = perm[:100], perm[100:]
    x_tr, y_tr = split.x_train[train_rows], split.y_train[train_rows]
    model = models.logistic_regression(64, 2, seed=0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x_before = x_tr.clone()
    kwargs = {"lr": 1.0, "epochs": 40, "weight_decay": 1e-3}
    result = poisoning.craft_poison(
        model, x_tr, y_tr, split.x_train[val_rows], split.y_train[val_rows],
        n_points=5, n_classes=2, steps=12, step_size=1.0, **kwargs,
    )
    assert torch.equal(x_tr, x_before)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert all(p.grad is None for p in model.parameters())
    assert result.path.shape == (13, 5, 1, 8, 8) and result.x_poison.shape == (5, 1, 8, 8)
    assert 0 <= result.x_poison.min() and result.x_poison.max() <= 1
    assert result.val_loss[-1] > result.val_loss[0]

    def test_error(x: torch.Tensor, y: torch.Tensor) -> float:
        victim = models.logistic_regression(64, 2, seed=0)
        train.train(victim, x, y, progress=False, **kwargs)
        return 1 - train.accuracy(victim, split.x_test, split.y_test)

    crafted = test_error(torch.cat([x_tr, result.x_poison]), torch.cat([y_tr, result.y_poison]))
    flips = [test_error(x_tr, poisoning.flip_labels(y_tr, 0.05, n_classes=2, seed=s)) for s in range(3)]
    assert crafted > max(flips) + 0.03


def test_craft_poison_rejects_bad_arguments() -> None:
    x, y = torch.rand(20, 1, 8, 8), torch.arange(20) % 2
    model = models.logistic_regression(64, 2, seed=0)
    common = {"n_classes": 2, "lr": 0.5, "epochs": 2}
    with pytest.raises(ValueError, match="n_points"):
        poisoning.craft_poison(model, x, y, x, y, n_points=0, **common)
    with pytest.raises(ValueError, match="step_size"):
        poisoning.craft_poison(model, x, y, x, y, n_points=2, step_size=0.0, **common)
    with pytest.raises(ValueError, match="y_val"):
        poisoning.craft_poison(model, x, y, x, y + 5, n_points=2, **common)


# ---------------------------------------------------------------- detection


@pytest.fixture(scope="module")
def backdoored(digits: data.Split) -> tuple:
    x_p, y_p, index = poisoning.add_backdoor(digits.x_train, digits.y_train, target=0, fraction=0.05)
    model = models.mlp(hidden=32, seed=0)
    train.train(model, x_p, y_p, lr=0.1, epochs=25, batch_size=32, progress=False)
    return model, x_p, y_p, index


def test_detect_poison_spectral_finds_backdoor_rows(backdoored: tuple) -> None:
    model, x_p, y_p, index = backdoored
    x0, y0 = x_p.clone(), y_p.clone()
    params = [p.detach().clone() for p in model.parameters()]
    model.train()
    found = poisoning.detect_poison(model, x_p, y_p, method="spectral", expected_fraction=0.05)
    assert model.training
    assert torch.equal(x_p, x0) and torch.equal(y_p, y0)
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters(), strict=True))
    model.eval()
    assert found.scores.shape == (len(x_p),)
    assert found.flagged.dtype == torch.int64 and len(found.flagged) == round(1.5 * 0.05 * len(x_p))
    precision, recall = poisoning.detection_quality(found.flagged, index)
    assert precision > 3 * 0.05 and recall > 3 * 0.05 * 1.5
    assert found.scores[index].mean() > 2 * found.scores.mean()


def test_detect_poison_loss_with_trusted_reference_finds_backdoor(digits: data.Split, backdoored: tuple) -> None:
    _, x_p, y_p, index = backdoored
    trusted = torch.randperm(len(x_p), generator=torch.Generator().manual_seed(1))[:150]
    trusted = trusted[~torch.isin(trusted, index)]
    reference = models.logistic_regression(seed=0)
    train.train(reference, x_p[trusted], y_p[trusted], lr=0.5, epochs=100, progress=False)
    found = poisoning.detect_poison(reference, x_p, y_p, method="loss", expected_fraction=0.05)
    precision, recall = poisoning.detection_quality(found.flagged, index)
    assert recall > 0.85 and precision > 0.5


def test_detect_poison_loss_method_finds_flipped_labels(digits: data.Split) -> None:
    model = models.logistic_regression(seed=0)
    train.train(model, digits.x_train, digits.y_train, lr=0.5, epochs=20, batch_size=64, progress=False)
    y_bad = poisoning.flip_labels(digits.y_train, 0.05, n_classes=10, seed=0)
    truth = torch.nonzero(y_bad != digits.y_train).flatten()
    found = poisoning.detect_poison(model, digits.x_train, y_bad, method="loss", expected_fraction=0.05, removal=1.0)
    precision, recall = poisoning.detection_quality(found.flagged, truth)
    assert precision > 0.8 and recall > 0.8


def test_detect_poison_rejects_bad_arguments(backdoored: tuple) -> None:
    model, x_p, y_p, _ = backdoored
    with pytest.raises(ValueError, match="method"):
        poisoning.detect_poison(model, x_p, y_p, method="magic")
    with pytest.raises(ValueError, match="expected_fraction"):
        poisoning.detect_poison(model, x_p, y_p, expected_fraction=0.0)
    with pytest.raises(ValueError, match="y"):
        poisoning.detect_poison(model, x_p, y_p[:-1])
    with pytest.raises(ValueError, match="model"):
        poisoning.detect_poison("model", x_p, y_p)


def test_detection_quality_counts() -> None:
    assert poisoning.detection_quality(torch.tensor([1, 2, 3, 4]), torch.tensor([2, 4, 6])) == (0.5, 2 / 3)
    assert poisoning.detection_quality(torch.tensor([], dtype=torch.long), torch.tensor([1])) == (0.0, 0.0)


def test_penultimate_features_shape(digits: data.Split) -> None:
    features = poisoning.penultimate_features(models.mlp(hidden=16, seed=0), digits.x_test[:7])
    assert features.shape == (7, 16)
    with pytest.raises(ValueError, match="nn.Linear"):
        poisoning.penultimate_features(torch.nn.Flatten(), digits.x_test[:2])
