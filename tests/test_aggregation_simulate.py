"""Tests for gdsec.aggregation.simulation: data-parallel SGD with honest and Byzantine workers."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from gdsec import aggregation as ag
from gdsec import data, models, train

RECIPE = ag.SimulationRecipe(n_workers=8, steps=40, lr=0.5, batch_size=16, eval_every=40)
SETTING_FIELDS = set(ag.Setting._fields)
RECIPE_FIELDS = {field.name for field in dataclasses.fields(ag.SimulationRecipe)}


def run(
    digits: data.Split, model: torch.nn.Module | None = None, **kwargs: object
) -> ag.Simulation:
    """simulate with RECIPE and a clean Setting, changed by ``kwargs`` (Setting or recipe fields, or keywords)."""
    model = models.logistic_regression(seed=0) if model is None else model
    setting = ag.Setting(**{k: v for k, v in kwargs.items() if k in SETTING_FIELDS})
    recipe = dataclasses.replace(RECIPE, **{k: v for k, v in kwargs.items() if k in RECIPE_FIELDS})
    rest = {"eval_data": (digits.x_test, digits.y_test)}
    rest |= {k: v for k, v in kwargs.items() if k not in SETTING_FIELDS | RECIPE_FIELDS}
    return ag.simulate(
        model, digits.x_train, digits.y_train, setting=setting, recipe=recipe, **rest
    )


@pytest.mark.integration
def test_simulation_median_survives_what_breaks_the_mean(digits: data.Split) -> None:
    x_before, y_before = digits.x_train.clone(), digits.y_train.clone()
    clean = run(digits)
    broken = run(digits, f=2, attack="sign_flip", aggregator="mean")
    robust = run(digits, f=2, attack="sign_flip", aggregator="coordinate_median")
    assert clean.accuracy[-1] > 0.85
    assert broken.accuracy[-1] < 0.5 or broken.diverged
    assert robust.accuracy[-1] > 0.8
    assert torch.equal(digits.x_train, x_before) and torch.equal(digits.y_train, y_before), (
        "simulate modified its data"
    )
    assert clean.steps[0] == 0 and clean.steps[-1] == 40 and len(clean.accuracy) == len(clean.steps)
    assert clean.aggregation_seconds >= 0


def test_simulation_is_deterministic(digits: data.Split) -> None:
    a = run(digits, f=1, attack="noise", aggregator="krum", steps=10)
    b = run(digits, f=1, attack="noise", aggregator="krum", steps=10, seed=0)
    assert a.accuracy == b.accuracy and torch.equal(a.final_params, b.final_params)
    c = run(digits, f=1, attack="noise", aggregator="krum", steps=10, seed=1)
    assert not torch.equal(a.final_params, c.final_params)


@pytest.mark.integration
def test_simulation_targeted_attack_and_norm_limit(digits: data.Split) -> None:
    source = digits.x_train[digits.y_train == 7][:20]
    wanted = torch.full((len(source),), 1)
    seen: list[torch.Tensor] = []
    deployed = models.logistic_regression(seed=0)
    train.train(
        deployed, digits.x_train, digits.y_train, lr=0.5, epochs=30, batch_size=64, progress=False
    )
    kwargs = {
        "f": 2,
        "attack": "targeted",
        "attacker_data": (source, wanted),
        "steps": 30,
        "lr": 0.1,
    }
    free = run(digits, deployed, **kwargs, on_step=lambda _step, grads: seen.append(grads))
    limited = run(digits, deployed, **kwargs, max_norm=1.0)
    assert len(seen) == 30 and seen[0].shape[0] == 8
    assert seen[0][:2].norm(dim=1).min() > 1.0, (
        "on_step sees the submissions as sent, before the limit clips them"
    )
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
        ({"scale": -1.0}, "scale"),
        ({"setting": ("mean", 0)}, "Setting"),
        ({"recipe": {"steps": 2}}, "recipe"),
    ],
)
def test_simulation_rejects_bad_arguments(digits: data.Split, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        if {"setting", "recipe"} & set(kwargs):
            arguments = {
                "setting": ag.Setting(),
                "recipe": RECIPE,
                "eval_data": (digits.x_test, digits.y_test),
            }
            ag.simulate(
                models.logistic_regression(seed=0),
                digits.x_train,
                digits.y_train,
                **(arguments | kwargs),
            )
        else:
            run(digits, **kwargs)


def test_simulation_rejects_bad_inputs(digits: data.Split) -> None:
    model = models.logistic_regression(seed=0)
    evaluation = (digits.x_test, digits.y_test)
    with pytest.raises(ValueError, match="x"):
        ag.simulate(
            model,
            digits.x_train * 2,
            digits.y_train,
            setting=ag.Setting(),
            recipe=RECIPE,
            eval_data=evaluation,
        )
    with pytest.raises(ValueError, match="y"):
        ag.simulate(
            model,
            digits.x_train,
            digits.y_train[:-1],
            setting=ag.Setting(),
            recipe=RECIPE,
            eval_data=evaluation,
        )


def test_simulate_batch_runs_each_setting_as_if_alone(digits: data.Split) -> None:
    settings = [
        ag.Setting("krum", 1, "alie", seed=0),
        ag.Setting("coordinate_median", 2, "noise", seed=1),
        ag.Setting("mean", 0, "none", max_norm=0.5, seed=2),
        ag.Setting("trimmed_mean", 1, "sign_flip", aggregator_f=2, seed=3),
    ]
    kwargs = {
        "recipe": ag.SimulationRecipe(n_workers=6, steps=12, lr=0.5, batch_size=8, eval_every=4),
        "eval_data": (digits.x_test, digits.y_test),
    }
    starts = [models.logistic_regression(seed=s.seed) for s in settings]
    batch = ag.simulate_batch(starts, digits.x_train, digits.y_train, settings=settings, **kwargs)
    for setting, start, run in zip(settings, starts, batch, strict=True):
        alone = ag.simulate(start, digits.x_train, digits.y_train, setting=setting, **kwargs)
        assert run.steps == alone.steps == [0, 4, 8, 12]
        assert torch.allclose(run.final_params, alone.final_params, atol=1e-5)
        assert run.accuracy == pytest.approx(alone.accuracy, abs=0.005)
        assert run.trajectory.shape == (4, 650) and torch.equal(
            run.trajectory[-1], run.final_params
        )
        assert torch.equal(
            run.trajectory[0], torch.nn.utils.parameters_to_vector(start.parameters()).detach()
        )
    assert not torch.allclose(batch[0].final_params, batch[1].final_params)


@pytest.mark.integration
def test_simulate_batch_marks_only_the_runs_that_diverge(digits: data.Split) -> None:
    settings = [ag.Setting("mean", 3, "sign_flip"), ag.Setting("coordinate_median", 3, "sign_flip")]
    starts = [models.mlp(hidden=8, seed=0)] * 2
    runs = ag.simulate_batch(
        starts,
        digits.x_train,
        digits.y_train,
        settings=settings,
        eval_data=(digits.x_test, digits.y_test),
        recipe=ag.SimulationRecipe(n_workers=10, lr=0.5, steps=150, batch_size=4, eval_every=50),
    )
    assert runs[0].diverged and not runs[1].diverged
    assert math.isnan(runs[0].accuracy[-1]) and runs[1].steps == [0, 50, 100, 150]
    assert not torch.isfinite(runs[0].final_params).all() or runs[0].final_params.abs().max() > 1e6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"settings": [ag.Setting()] * 2}, "settings"),
        ({"settings": ag.Setting()}, "settings"),
        ({"settings": [("mean", 0, "none")]}, "Setting"),
        ({"settings": [ag.Setting("krum", 4)]}, "f must be"),
        ({"settings": [ag.Setting(max_norm=0.0)]}, "max_norm"),
        ({"settings": [ag.Setting(seed=-1)]}, "seed"),
        ({"settings": [ag.Setting(aggregator_f=-1)]}, "aggregator_f"),
        ({"settings": [ag.Setting(attack="gentle")]}, "attack"),
        ({"models": [models.mlp(hidden=8, seed=0)]}, "models"),
        ({"models": []}, "models"),
    ],
)
def test_simulate_batch_rejects_bad_settings(digits: data.Split, kwargs: dict, match: str) -> None:
    arguments = {
        "models": [models.logistic_regression(seed=0)],
        "settings": [ag.Setting()],
    } | kwargs
    if match == "models" and arguments["models"]:
        arguments["models"] = [models.logistic_regression(seed=0), *arguments["models"]]
        arguments["settings"] = [ag.Setting()] * 2
    with pytest.raises(ValueError, match=match):
        ag.simulate_batch(
            arguments["models"],
            digits.x_train,
            digits.y_train,
            settings=arguments["settings"],
            recipe=ag.SimulationRecipe(n_workers=8, steps=2),
            eval_data=(digits.x_test, digits.y_test),
        )
