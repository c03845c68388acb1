"""Tests for gdsec.aggregation.experiments (chapter 4's experiment) and the chapter 4 explorer."""

from __future__ import annotations

import dataclasses

import ipywidgets as widgets
import pytest
import torch

from gdsec import aggregation, data
from gdsec.aggregation import experiments
from gdsec.widgets.aggregation import F_VALUES, aggregation_explorer

FAST = experiments.Recipe(steps=12, eval_every=6)


def test_recipe_defaults_are_the_chapter_settings_and_frozen() -> None:
    recipe = experiments.Recipe()
    assert dataclasses.astuple(recipe) == (10, 32, 0.3, 80, 4, 10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.steps = 5  # type: ignore[misc]
    with pytest.raises(ValueError, match="batch_size"):
        experiments.Recipe(batch_size=0)


def test_run_setting_is_pure_and_uses_the_recipe(digits: data.Split) -> None:
    before = digits.x_train.clone()
    a = experiments.run_setting(digits, "coordinate_median", 1, "sign_flip", recipe=FAST)
    b = experiments.run_setting(digits, "coordinate_median", 1, "sign_flip", recipe=FAST)
    assert torch.equal(digits.x_train, before)
    assert a.final_params is not b.final_params and torch.equal(a.final_params, b.final_params)
    assert a.steps == [0, 6, 12]
    assert a.final_params.numel() == 64 * 32 + 32 + 32 * 10 + 10
    narrow = experiments.run_setting(digits, "mean", 0, "none", recipe=dataclasses.replace(FAST, hidden=8))
    assert narrow.final_params.numel() == 64 * 8 + 8 + 8 * 10 + 10
    clean = experiments.run_setting(digits, "mean", 0, "none", recipe=FAST)
    assert torch.equal(clean.final_params, experiments.run_setting(digits, "mean", 0, "alie", recipe=FAST).final_params)
    broken = experiments.run_setting(digits, "mean", 3, "sign_flip", recipe=FAST)
    assert broken.diverged or broken.accuracy[-1] < clean.accuracy[-1] - 0.2


@pytest.mark.parametrize(
    "change", [{"hidden": 8}, {"lr": 0.05}, {"steps": 6}, {"batch_size": 8}, {"eval_every": 4}, {"n_workers": 6}]
)
def test_every_recipe_field_reaches_the_run(digits: data.Split, change: dict) -> None:
    base = experiments.run_setting(digits, "trimmed_mean", 1, "noise", recipe=FAST)
    other = experiments.run_setting(digits, "trimmed_mean", 1, "noise", recipe=dataclasses.replace(FAST, **change))
    assert other.steps != base.steps or not torch.equal(other.final_params, base.final_params)


@pytest.mark.parametrize(
    ("args", "match"),
    [(("median", 1, "alie"), "aggregator"), (("mean", 10, "alie"), "f"), (("mean", 1, "targeted"), "attack")],
)
def test_run_setting_rejects_bad_arguments(digits: data.Split, args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        experiments.run_setting(digits, *args, recipe=FAST)


def test_sweep_runs_each_setting_once(digits: data.Split, monkeypatch) -> None:
    calls = []
    real = experiments.run_setting

    def counting(*args, **kwargs):
        calls.append(args[1:])
        return real(*args, **kwargs)

    monkeypatch.setattr(experiments, "run_setting", counting)
    runs = experiments.sweep(digits, ("mean", "krum"), (0, 1), ("sign_flip", "alie"), recipe=FAST)
    assert len(runs) == 8 and len(calls) == 2 + 4
    assert runs["sign_flip", 0, "krum"] is runs["alie", 0, "krum"]


def _images(widget: widgets.Widget) -> list[widgets.Image]:
    if isinstance(widget, widgets.Image):
        return [widget]
    return [image for child in getattr(widget, "children", ()) for image in _images(child)]


@pytest.fixture(scope="module")
def grid_runs(digits: data.Split) -> dict:
    return experiments.sweep(digits, aggregation.AGGREGATORS, F_VALUES, ("sign_flip",), recipe=FAST)


def test_explorer_lays_out_the_runs_it_is_given(grid_runs: dict) -> None:
    box = aggregation_explorer(grid_runs, live=False)
    assert len(_images(box)) == len(aggregation.AGGREGATORS) * len(F_VALUES)
    with pytest.raises(ValueError, match="missing"):
        aggregation_explorer({k: v for k, v in grid_runs.items() if k != ("sign_flip", 3, "krum")}, live=False)
    with pytest.raises(ValueError, match="missing"):
        aggregation_explorer(grid_runs, attack="alie", live=False)


def test_live_explorer_computes_only_what_it_lacks(digits: data.Split, grid_runs: dict) -> None:
    asked = []

    def compute(aggregator: str, f: int, attack: str) -> aggregation.Simulation:
        asked.append((aggregator, f, attack))
        return experiments.run_setting(digits, aggregator, f, attack, recipe=FAST)

    box = aggregation_explorer(grid_runs, compute=compute, live=True)
    assert asked == []
    slider = next(c for c in box.children if isinstance(c, widgets.FloatSlider))
    slider.value = 2
    assert asked == [("mean", 2, "sign_flip")]
    slider.value = 3
    slider.value = 2  # computed once, then kept by this explorer
    assert asked == [("mean", 2, "sign_flip")]
