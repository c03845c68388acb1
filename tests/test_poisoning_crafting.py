"""Tests for gdsec.poisoning.crafting: Biggio-style poison crafted by ascent through unrolled training."""

from __future__ import annotations

import pytest
import torch

from gdsec import data, models, poisoning, train


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


def test_craft_poison_default_seed_is_zero() -> None:
    x, y = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(20) % 2
    model = models.logistic_regression(64, 2, seed=0)
    common = {"n_points": 3, "n_classes": 2, "lr": 0.5, "epochs": 2, "steps": 1}
    default = poisoning.craft_poison(model, x, y, x, y, **common)
    assert torch.equal(default.path[0], poisoning.craft_poison(model, x, y, x, y, seed=0, **common).path[0])
    assert not torch.equal(default.path[0], poisoning.craft_poison(model, x, y, x, y, seed=1, **common).path[0])


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
    with pytest.raises(ValueError, match="seed"):
        poisoning.craft_poison(model, x, y, x, y, n_points=2, seed=-1, **common)
