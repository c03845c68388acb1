"""Tests for gdsec.poisoning.matching: gradient matching with correctly labelled poison."""

from __future__ import annotations

import pytest
import torch

from gdsec import data, models, poisoning, train


@pytest.fixture(scope="module")
def setting():
    """A clean 3-versus-8 victim, one test 3 near its boundary, and the ten training 8s closest to it."""
    split = data.two_digits(3, 8)
    x, y = split.x_train[:100], split.y_train[:100]
    victim = models.logistic_regression(64, 2, seed=0)
    train.train(victim, x, y, lr=1.0, epochs=40, weight_decay=1e-3, progress=False)
    with torch.no_grad():
        margin = victim(split.x_test)[:, 0] - victim(split.x_test)[:, 1]
    threes = torch.nonzero((split.y_test == 0) & (margin > 0)).flatten()
    target = threes[margin[threes].argmin()]
    x_t = split.x_test[target : target + 1]
    eights = torch.nonzero(y == 1).flatten()
    rows = eights[(x[eights] - x_t).flatten(1).norm(dim=1).argsort()[:10]]
    return victim, x, y, rows, x_t


def test_match_gradient_raises_the_cosine_within_the_budget_and_keeps_everything_else(
    setting,
) -> None:
    victim, x, y, rows, x_t = setting
    state = {k: v.clone() for k, v in victim.state_dict().items()}
    x_rows = x[rows].clone()
    match = poisoning.match_gradient(
        victim, x[rows], y[rows], x_t, torch.tensor([1]), eps=0.3, steps=40
    )
    assert torch.equal(x[rows], x_rows)
    assert all(torch.equal(v, victim.state_dict()[k]) for k, v in state.items())
    assert all(p.grad is None for p in victim.parameters())
    assert match.x_poison.shape == x_rows.shape and len(match.cosine) == 40
    assert (match.x_poison - x_rows).abs().max() <= 0.3 + 1e-6
    assert 0 <= match.x_poison.min() and match.x_poison.max() <= 1
    assert 1 - match.cosine[-1] < (1 - match.cosine[0]) / 5, match.cosine
    again = poisoning.match_gradient(
        victim, x[rows], y[rows], x_t, torch.tensor([1]), eps=0.3, steps=40
    )
    assert torch.equal(again.x_poison, match.x_poison), "gradient matching is deterministic"


def test_match_gradient_steers_a_retrained_victim_more_than_random_noise(setting) -> None:
    victim, x, y, rows, x_t = setting
    match = poisoning.match_gradient(victim, x[rows], y[rows], x_t, torch.tensor([1]), eps=0.3)

    def read_as_eight(poison: torch.Tensor) -> float:
        x_bad = x.clone()
        x_bad[rows] = poison
        fooled = []
        for seed in range(3):
            retrained = models.logistic_regression(64, 2, seed=seed)
            train.train(retrained, x_bad, y, lr=1.0, epochs=40, weight_decay=1e-3, progress=False)
            fooled.append(float(train.predict(retrained, x_t).item() == 1))
        return sum(fooled) / len(fooled)

    sign = torch.where(torch.arange(x[rows].numel()) % 2 == 0, 1.0, -1.0).reshape(x[rows].shape)
    assert read_as_eight(match.x_poison) > read_as_eight((x[rows] + 0.3 * sign).clamp(0, 1))


def test_match_gradient_rejects_bad_arguments(setting) -> None:
    victim, x, y, rows, x_t = setting
    target = torch.tensor([1])
    with pytest.raises(ValueError, match="eps"):
        poisoning.match_gradient(victim, x[rows], y[rows], x_t, target, eps=0.0)
    with pytest.raises(ValueError, match="steps"):
        poisoning.match_gradient(victim, x[rows], y[rows], x_t, target, eps=0.3, steps=0)
    with pytest.raises(ValueError, match="lr"):
        poisoning.match_gradient(victim, x[rows], y[rows], x_t, target, eps=0.3, lr=-1.0)
    with pytest.raises(ValueError, match="y_target"):
        poisoning.match_gradient(victim, x[rows], y[rows], x_t, torch.tensor([1, 0]), eps=0.3)
    with pytest.raises(ValueError, match="x_target"):
        poisoning.match_gradient(victim, x[rows], y[rows], x_t.flatten(1), target, eps=0.3)
    with pytest.raises(ValueError, match="x"):
        poisoning.match_gradient(victim, x[rows] + 2.0, y[rows], x_t, target, eps=0.3)
