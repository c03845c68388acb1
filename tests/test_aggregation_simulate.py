"""Tests for gdsec.aggregation.simulate: data-parallel SGD with honest and Byzantine workers."""

from __future__ import annotations

import pytest
import torch

from gdsec import aggregation as ag
from gdsec import data, models, train


def run(digits: data.Split, model: torch.nn.Module | None = None, **kwargs: object) -> ag.Simulation:
    model = models.logistic_regression(seed=0) if model is None else model
    settings_ = {"n_workers": 8, "steps": 40, "lr": 0.5, "batch_size": 16, "eval_every": 40,
                 "eval_data": (digits.x_test, digits.y_test)} | kwargs
    return ag.simulate(model, digits.x_train, digits.y_train, **settings_)


def test_simulation_median_survives_what_breaks_the_mean(digits: data.Split) -> None:
    x_before, y_before = digits.x_train.clone(), digits.y_train.clone()
    clean = run(digits)
    broken = run(digits, f=2, attack="sign_flip", aggregator="mean")
    robust = run(digits, f=2, attack="sign_flip", aggregator="coordinate_median")
    assert clean.accuracy[-1] > 0.85
    assert broken.accuracy[-1] < 0.5 or broken.diverged
    assert robust.accuracy[-1] > 0.8
    assert torch.equal(digits.x_train, x_before) and torch.equal(digits.y_train, y_before), "simulate modified its data"
    assert clean.steps[0] == 0 and clean.steps[-1] == 40 and len(clean.accuracy) == len(clean.steps)
    assert clean.aggregation_seconds >= 0


def test_simulation_is_deterministic(digits: data.Split) -> None:
    a = run(digits, f=1, attack="noise", aggregator="krum", steps=10)
    b = run(digits, f=1, attack="noise", aggregator="krum", steps=10, seed=0)
    assert a.accuracy == b.accuracy and torch.equal(a.final_params, b.final_params)
    c = run(digits, f=1, attack="noise", aggregator="krum", steps=10, seed=1)
    assert not torch.equal(a.final_params, c.final_params)


def test_simulation_targeted_attack_and_norm_limit(digits: data.Split) -> None:
    source = digits.x_train[digits.y_train == 7][:20]
    wanted = torch.full((len(source),), 1)
    seen: list[torch.Tensor] = []
    deployed = models.logistic_regression(seed=0)
    train.train(deployed, digits.x_train, digits.y_train, lr=0.5, epochs=30, batch_size=64, progress=False)
    kwargs = {"f": 2, "attack": "targeted", "attacker_data": (source, wanted), "steps": 30, "lr": 0.1}
    free = run(digits, deployed, **kwargs, on_step=lambda _step, grads: seen.append(grads))
    limited = run(digits, deployed, **kwargs, max_norm=1.0)
    assert len(seen) == 30 and seen[0].shape[0] == 8
    model = models.logistic_regression(seed=0)

    def success(theta: torch.Tensor) -> float:
        torch.nn.utils.vector_to_parameters(theta, model.parameters())
        with torch.no_grad():
            return (model(digits.x_test[digits.y_test == 7]).argmax(1) == 1).float().mean().item()

    assert success(torch.nn.utils.parameters_to_vector(deployed.parameters()).detach()) < 0.1
    assert success(free.final_params) > 0.8
    assert success(limited.final_params) < 0.3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"aggregator": "krum", "f": 3}, "f must be"),
        ({"attack": "targeted", "f": 1}, "attacker_data"),
        ({"f": 8}, "f"),
        ({"lr": 0.0}, "lr"),
        ({"aggregator": "best"}, "aggregator"),
        ({"attack": "gentle"}, "attack"),
        ({"batch_size": 10_000}, "batch_size"),
        ({"eval_data": None}, "eval_data"),
        ({"seed": -1}, "seed"),
    ],
)
def test_simulation_rejects_bad_arguments(digits: data.Split, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        run(digits, **kwargs)


def test_simulation_rejects_bad_inputs(digits: data.Split) -> None:
    model = models.logistic_regression(seed=0)
    evaluation = (digits.x_test, digits.y_test)
    with pytest.raises(ValueError, match="x"):
        ag.simulate(model, digits.x_train * 2, digits.y_train, eval_data=evaluation)
    with pytest.raises(ValueError, match="y"):
        ag.simulate(model, digits.x_train, digits.y_train[:-1], eval_data=evaluation)
