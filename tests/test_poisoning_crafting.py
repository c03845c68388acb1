"""Tests for gdsec.poisoning.crafting: Biggio-style poison crafted by ascent through unrolled training."""

from __future__ import annotations

import pytest
import torch

from gdsec import data, models, poisoning, train


@pytest.mark.integration
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
        model,
        x_tr,
        y_tr,
        split.x_train[val_rows],
        split.y_train[val_rows],
        n_points=5,
        n_classes=2,
        ascent=poisoning.Ascent(steps=12, step_size=1.0),
        **kwargs,
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
    flips = [
        test_error(x_tr, poisoning.flip_labels(y_tr, 0.05, n_classes=2, seed=s)) for s in range(3)
    ]
    assert crafted > max(flips) + 0.03


def test_craft_poison_default_seed_is_zero() -> None:
    x, y = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(20) % 2
    model = models.logistic_regression(64, 2, seed=0)
    common = {
        "n_points": 3,
        "n_classes": 2,
        "lr": 0.5,
        "epochs": 2,
        "ascent": poisoning.Ascent(steps=1),
    }
    default = poisoning.craft_poison(model, x, y, x, y, **common)
    assert torch.equal(
        default.path[0], poisoning.craft_poison(model, x, y, x, y, seed=0, **common).path[0]
    )
    assert not torch.equal(
        default.path[0], poisoning.craft_poison(model, x, y, x, y, seed=1, **common).path[0]
    )


def test_craft_poison_rejects_bad_arguments() -> None:
    x, y = torch.rand(20, 1, 8, 8), torch.arange(20) % 2
    model = models.logistic_regression(64, 2, seed=0)
    common = {"n_classes": 2, "lr": 0.5, "epochs": 2}
    with pytest.raises(ValueError, match="n_points"):
        poisoning.craft_poison(model, x, y, x, y, n_points=0, **common)
    with pytest.raises(ValueError, match="step_size"):
        poisoning.Ascent(step_size=0.0)
    with pytest.raises(ValueError, match="decay"):
        poisoning.Ascent(decay=1.5)
    with pytest.raises(ValueError, match="ascent"):
        poisoning.craft_poison(model, x, y, x, y, n_points=2, ascent={"steps": 3}, **common)
    with pytest.raises(ValueError, match="y_val"):
        poisoning.craft_poison(model, x, y, x, y + 5, n_points=2, **common)
    with pytest.raises(ValueError, match="seed"):
        poisoning.craft_poison(model, x, y, x, y, n_points=2, seed=-1, **common)


def test_ascent_bound_sums_the_decaying_steps() -> None:
    assert poisoning.Ascent(steps=3, step_size=2.0, decay=0.5).bound() == pytest.approx(
        2.0 * (1 + 0.5 + 0.25)
    )
    assert poisoning.Ascent(steps=0).bound() == 0.0


def test_unrolled_validation_loss_matches_training_the_victim() -> None:
    split = data.two_digits(3, 8)
    x, y = split.x_train[:60], split.y_train[:60]
    model = models.logistic_regression(64, 2, seed=0)
    kwargs = {"lr": 0.5, "epochs": 5, "weight_decay": 1e-3}
    loss = poisoning.unrolled_validation_loss(model, x, y, split.x_test, split.y_test, **kwargs)
    victim = models.logistic_regression(64, 2, seed=0)
    train.train(victim, x, y, progress=False, **kwargs)
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(victim(split.x_test), split.y_test)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    x_grad = x.clone().requires_grad_(True)
    loss = poisoning.unrolled_validation_loss(
        model, x_grad, y, split.x_test, split.y_test, **kwargs
    )
    (grad,) = torch.autograd.grad(loss, x_grad)
    assert grad.abs().sum() > 0, "the loss must be differentiable in the training inputs"
