"""Tests for gdsec.aggregation.experiments (chapter 4's experiment) and the chapter 4 explorer."""

from __future__ import annotations

import dataclasses

import ipywidgets as widgets
import pytest
import torch

from gdsec import aggregation, data
from gdsec.aggregation import experiments
from gdsec.widgets.aggregation import F_VALUES, SHOWN_ATTACKS, aggregation_explorer

FAST = aggregation.SimulationRecipe(steps=12, eval_every=6)


def run_setting(
    split: data.Split,
    aggregator: str,
    f: int,
    attack: str,
    *,
    recipe=FAST,
    hidden: int = 32,
    seed: int = 0,
) -> aggregation.Simulation:
    """One run of experiments.run_settings: the chapter's MLP with ``f`` workers running ``attack``."""
    return experiments.run_settings(
        split, [(attack, f, aggregator)], recipe=recipe, hidden=hidden, seeds=[seed]
    )[attack, f, aggregator][0]


def test_recipe_defaults_are_the_chapter_settings_and_frozen() -> None:
    recipe = aggregation.SimulationRecipe()
    assert dataclasses.astuple(recipe) == (10, 0.3, 80, 4, 10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.steps = 5  # type: ignore[misc]
    for field in ("n_workers", "lr", "steps", "batch_size", "eval_every"):
        with pytest.raises(ValueError, match=field):
            aggregation.SimulationRecipe(**{field: 0})


@pytest.mark.integration
def test_run_setting_is_pure_and_uses_the_recipe(digits: data.Split) -> None:
    before = digits.x_train.clone()
    a = run_setting(digits, "coordinate_median", 1, "sign_flip", recipe=FAST)
    b = run_setting(digits, "coordinate_median", 1, "sign_flip", recipe=FAST)
    assert torch.equal(digits.x_train, before)
    assert a.final_params is not b.final_params and torch.equal(a.final_params, b.final_params)
    assert a.steps == [0, 6, 12]
    assert a.final_params.numel() == 64 * 32 + 32 + 32 * 10 + 10
    narrow = run_setting(digits, "mean", 0, "none", hidden=8)
    assert narrow.final_params.numel() == 64 * 8 + 8 + 8 * 10 + 10
    clean = run_setting(digits, "mean", 0, "none", recipe=FAST)
    assert a.trajectory.shape == (3, a.final_params.numel())
    assert torch.equal(
        clean.final_params, run_setting(digits, "mean", 0, "alie", recipe=FAST).final_params
    )
    broken = run_setting(digits, "mean", 3, "sign_flip", recipe=FAST)
    assert broken.diverged or broken.accuracy[-1] < clean.accuracy[-1] - 0.2


@pytest.mark.parametrize(
    "change",
    [
        {"hidden": 8},
        {"lr": 0.05},
        {"steps": 6},
        {"batch_size": 8},
        {"eval_every": 4},
        {"n_workers": 6},
    ],
)
@pytest.mark.integration
def test_every_recipe_field_reaches_the_run(digits: data.Split, change: dict) -> None:
    base = run_setting(digits, "trimmed_mean", 1, "noise", recipe=FAST)
    hidden = change.pop("hidden", 32)
    other = run_setting(
        digits,
        "trimmed_mean",
        1,
        "noise",
        recipe=dataclasses.replace(FAST, **change),
        hidden=hidden,
    )
    assert other.steps != base.steps or not torch.equal(other.final_params, base.final_params)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("median", 1, "alie"), "aggregator"),
        (("mean", 10, "alie"), "f"),
        (("mean", 1, "targeted"), "attack"),
    ],
)
def test_run_setting_rejects_bad_arguments(digits: data.Split, args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        run_setting(digits, *args, recipe=FAST)


@pytest.mark.integration
def test_sweep_runs_each_setting_once_per_seed(digits: data.Split, monkeypatch) -> None:
    calls = []
    real = experiments.simulate_batch

    def counting(models, *args, settings, **kwargs):
        calls.append(list(settings))
        return real(models, *args, settings=settings, **kwargs)

    monkeypatch.setattr(experiments, "simulate_batch", counting)
    runs = experiments.sweep(
        digits, ("mean", "krum"), (0, 1), ("sign_flip", "alie"), recipe=FAST, seeds=(0, 1)
    )
    assert len(runs) == 8 and len(calls) == 1, "one batch for the whole sweep"
    assert len(calls[0]) == (2 + 4) * 2, "each setting once per seed: the clean runs are shared"
    assert runs["sign_flip", 0, "krum"] is runs["alie", 0, "krum"]
    assert all(len(value) == 2 for value in runs.values())
    assert [s.seed for s in calls[0][:2]] == [0, 1]


@pytest.mark.integration
def test_run_settings_tells_the_clean_rules_one_attacker_and_matches_run_setting(
    digits: data.Split, monkeypatch
) -> None:
    seen = []
    real = experiments.simulate_batch
    monkeypatch.setattr(
        experiments,
        "simulate_batch",
        lambda models, *a, settings, **k: (
            seen.extend(settings) or real(models, *a, settings=settings, **k)
        ),
    )
    done = experiments.run_settings(
        digits, [("alie", 0, "krum"), ("alie", 3, "trimmed_mean")], recipe=FAST, seeds=[4]
    )
    assert [(s.attack, s.f, s.aggregator_f, s.seed) for s in seen] == [
        ("none", 0, 1, 4),
        ("alie", 3, 3, 4),
    ]
    alone = run_setting(digits, "trimmed_mean", 3, "alie", recipe=FAST, seed=4)
    assert torch.allclose(
        done["alie", 3, "trimmed_mean"][0].final_params, alone.final_params, atol=1e-5
    )
    with pytest.raises(ValueError, match="seeds"):
        experiments.run_settings(digits, [("alie", 1, "mean")], recipe=FAST, seeds=[1, 1])
    with pytest.raises(ValueError, match="keys"):
        experiments.run_settings(digits, [], recipe=FAST)
    with pytest.raises(ValueError, match="keys"):
        experiments.run_settings(digits, [("alie", 1)], recipe=FAST)


@pytest.mark.integration
def test_final_accuracy_and_accuracy_table_count_divergence_as_zero(digits: data.Split) -> None:
    long = aggregation.SimulationRecipe(steps=80, eval_every=40)
    runs = experiments.sweep(digits, ("mean",), (3,), ("sign_flip",), recipe=long, seeds=(0, 1))[
        "sign_flip", 3, "mean"
    ]
    good = experiments.run_settings(digits, [("alie", 1, "mean")], recipe=long, seeds=(0, 1))[
        "alie", 1, "mean"
    ]
    assert all(run.diverged for run in runs)
    assert torch.equal(experiments.final_accuracy(runs), torch.zeros(2))
    assert torch.allclose(
        experiments.final_accuracy(good), torch.tensor([r.accuracy[-1] for r in good])
    )
    steps, table = experiments.accuracy_table([*good, *runs])
    assert steps == [0, 40, 80] and table.shape == (4, 3)
    assert torch.equal(table[2:, -1], torch.zeros(2)) and (table[:2, -1] > 0.5).all()
    with pytest.raises(ValueError, match="runs"):
        experiments.final_accuracy(good[0])


def _images(widget: widgets.Widget) -> list[widgets.Image]:
    if isinstance(widget, widgets.Image):
        return [widget]
    return [image for child in getattr(widget, "children", ()) for image in _images(child)]


@pytest.fixture(scope="module")
def grid_runs(digits: data.Split) -> dict:
    return experiments.sweep(
        digits, aggregation.AGGREGATORS, (0, *F_VALUES), SHOWN_ATTACKS, recipe=FAST, seeds=(0, 1)
    )


@pytest.mark.integration
def test_explorer_lays_out_the_runs_it_is_given(grid_runs: dict) -> None:
    box = aggregation_explorer(grid_runs, live=False)
    assert SHOWN_ATTACKS[0] == "alie", "the chapter's headline attack is the first view"
    assert len(_images(box)) == len(SHOWN_ATTACKS) * len(aggregation.AGGREGATORS) * len(F_VALUES)
    with pytest.raises(ValueError, match="missing"):
        aggregation_explorer(
            {k: v for k, v in grid_runs.items() if k != ("alie", 3, "krum")}, live=False
        )
    only_flip = {k: v for k, v in grid_runs.items() if k[0] == "sign_flip"}
    assert len(
        _images(aggregation_explorer(only_flip, attacks=("sign_flip",), live=False))
    ) == 4 * len(F_VALUES)
    with pytest.raises(ValueError, match="missing"):
        aggregation_explorer(only_flip, live=False)
    with pytest.raises(ValueError, match="attacks"):
        aggregation_explorer(grid_runs, attacks=("gentle",), live=False)


@pytest.mark.integration
def test_live_explorer_computes_only_what_it_lacks(digits: data.Split, grid_runs: dict) -> None:
    asked = []

    def compute(aggregator: str, f: int, attack: str) -> tuple[aggregation.Simulation, ...]:
        asked.append((aggregator, f, attack))
        return (run_setting(digits, aggregator, f, attack, recipe=FAST),)

    box = aggregation_explorer(grid_runs, compute=compute, live=True)
    assert asked == []
    slider = next(c for c in box.children if isinstance(c, widgets.FloatSlider))
    slider.value = 2
    assert asked == [("mean", 2, "alie")]
    slider.value = 3
    slider.value = 2  # computed once, then kept by this explorer
    assert asked == [("mean", 2, "alie")]
