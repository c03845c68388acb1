"""Tests for gdsec.poisoning.experiments (chapter 3's experiment) and the chapter 3 explorer."""

from __future__ import annotations

import dataclasses
import functools

import ipywidgets as widgets
import pytest
import torch

from gdsec import data
from gdsec.poisoning import experiments
from gdsec.widgets.poisoning import FRACTIONS, poisoning_explorer


@pytest.fixture(scope="module")
def small(digits: data.Split) -> data.Split:
    """A quarter of the digits, so that each run trains in well under a second."""
    return data.Split(
        digits.x_train[:400], digits.y_train[:400], digits.x_test[:150], digits.y_test[:150]
    )


FAST = experiments.PoisoningRecipe(epochs=4)


def test_measure_is_pure_and_repeatable(small: data.Split) -> None:
    before = small.x_train.clone(), small.y_train.clone()
    a = experiments.measure(small, "backdoor", 0.2, recipe=FAST)
    b = experiments.measure(small, "backdoor", 0.2, recipe=FAST)
    assert torch.equal(small.x_train, before[0]) and torch.equal(small.y_train, before[1])
    assert a.model is not b.model  # nothing is cached: each result owns its model
    assert a.clean_accuracy == b.clean_accuracy and a.attack_success == b.attack_success
    with torch.no_grad():
        next(a.model.parameters()).add_(1.0)
    assert (
        experiments.measure(small, "backdoor", 0.2, recipe=FAST).clean_accuracy == b.clean_accuracy
    )
    assert len(a.index) == round(0.2 * 400) and torch.all(a.y_train[a.index] == FAST.target)
    assert a.target == FAST.target


def test_measure_uses_every_recipe_setting(small: data.Split) -> None:
    base = experiments.measure(small, "label flip", 0.1, recipe=FAST)
    assert sum(p.numel() for p in base.model.parameters()) == 64 * 32 + 32 + 32 * 10 + 10
    wide = experiments.measure(small, "label flip", 0.1, recipe=dataclasses.replace(FAST, hidden=8))
    assert sum(p.numel() for p in wide.model.parameters()) == 64 * 8 + 8 + 8 * 10 + 10
    slow = experiments.measure(small, "label flip", 0.1, recipe=dataclasses.replace(FAST, lr=1e-4))
    assert slow.clean_accuracy < base.clean_accuracy - 0.3
    other = experiments.measure(small, "backdoor", 0.2, recipe=dataclasses.replace(FAST, target=3))
    assert other.target == 3 and torch.all(other.y_train[other.index] == 3)


def test_measure_seeds_matches_measure_run_by_run(small: data.Split) -> None:
    runs = [("backdoor", 0.2, 3), ("label flip", 0.1, 7), ("label flip", 0.0, 1)]
    batched = experiments.measure_seeds(small, runs, recipe=FAST)
    for (kind, fraction, seed), got in zip(runs, batched, strict=True):
        alone = experiments.measure(small, kind, fraction, recipe=FAST, seed=seed)
        assert torch.equal(got.index, alone.index) and torch.equal(got.y_train, alone.y_train)
        assert abs(got.clean_accuracy - alone.clean_accuracy) <= 1 / 150
        assert abs(got.attack_success - alone.attack_success) <= 1 / 100
    assert (
        batched[0].clean_accuracy != batched[1].clean_accuracy
        or batched[0].attack_success != batched[1].attack_success
    )
    with pytest.raises(ValueError, match="seeds"):
        experiments.measure_seeds(
            small, [("backdoor", 0.2, 3), ("label flip", 0.1, 3)], recipe=FAST
        )
    with pytest.raises(ValueError, match="runs"):
        experiments.measure_seeds(small, [("backdoor", 0.2)], recipe=FAST)
    with pytest.raises(ValueError, match="kind"):
        experiments.measure_seeds(small, [("magic", 0.2, 0)], recipe=FAST)


def test_accuracy_curve_continues_training(small: data.Split) -> None:
    curve = experiments.accuracy_curve(
        small, [0.0, 0.5], seeds=[0, 1], checkpoints=[1, 2, 3, 4], recipe=FAST
    )
    assert curve.shape == (2, 4)
    one = experiments.measure(
        small, "label flip", 0.0, recipe=dataclasses.replace(FAST, epochs=1), seed=0
    )
    four = experiments.measure(small, "label flip", 0.0, recipe=FAST, seed=0)
    assert abs(curve[0, 0].item() - one.clean_accuracy) <= 1 / 150
    assert four.clean_accuracy > one.clean_accuracy + 0.05
    # training continues from checkpoint to checkpoint: after four one-epoch segments it is a four-epoch model
    assert abs(curve[0, -1].item() - four.clean_accuracy) < 0.5 * (
        four.clean_accuracy - one.clean_accuracy
    )
    assert curve[1, -1] < curve[0, -1], "half the labels flipped cost accuracy"
    with pytest.raises(ValueError, match="checkpoints"):
        experiments.accuracy_curve(small, [0.0], seeds=[0], checkpoints=[4, 1], recipe=FAST)
    with pytest.raises(ValueError, match="fractions"):
        experiments.accuracy_curve(small, [0.0, 0.1], seeds=[0], checkpoints=[1], recipe=FAST)


def test_recipe_is_frozen_and_checked() -> None:
    recipe = experiments.PoisoningRecipe()
    assert (recipe.hidden, recipe.lr, recipe.epochs, recipe.batch_size, recipe.target) == (
        32,
        0.1,
        15,
        32,
        0,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.lr = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="epochs"):
        experiments.PoisoningRecipe(epochs=0)
    with pytest.raises(ValueError, match="lr"):
        experiments.PoisoningRecipe(lr=-1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "poison"}, "kind"),
        ({"fraction": 1.5}, "fraction"),
        ({"recipe": {"lr": 0.1}}, "recipe"),
        ({"split": (1, 2)}, "split"),
    ],
)
def test_measure_rejects_bad_arguments(small: data.Split, kwargs: dict, match: str) -> None:
    args = {"split": small, "kind": "backdoor", "fraction": 0.1} | kwargs
    with pytest.raises(ValueError, match=match):
        experiments.measure(args.pop("split"), args.pop("kind"), args.pop("fraction"), **args)


def _images(widget: widgets.Widget) -> list[widgets.Image]:
    if isinstance(widget, widgets.Image):
        return [widget]
    return [image for child in getattr(widget, "children", ()) for image in _images(child)]


@pytest.fixture(scope="module")
def grid_runs(small: data.Split) -> dict:
    clean = experiments.measure(small, "label flip", 0.0, recipe=FAST)
    return {
        (kind, f): experiments.measure(small, kind, f, recipe=FAST) if f else clean
        for kind in experiments.POISON_KINDS
        for f in FRACTIONS
    }


@pytest.mark.integration
def test_explorer_lays_out_the_results_it_is_given(small: data.Split, grid_runs: dict) -> None:
    box = poisoning_explorer(grid_runs, small.x_test, small.y_test, live=False)
    assert len(_images(box)) == len(experiments.POISON_KINDS) * len(FRACTIONS)
    partial = {k: v for k, v in grid_runs.items() if k != ("backdoor", 0.3)}
    with pytest.raises(ValueError, match="missing"):
        poisoning_explorer(partial, small.x_test, small.y_test, live=False)


@pytest.mark.integration
def test_live_explorer_computes_only_what_it_lacks(small: data.Split, grid_runs: dict) -> None:
    asked = []

    def compute(kind: str, fraction: float) -> experiments.Measurement:
        asked.append((kind, fraction))
        return functools.partial(experiments.measure, small, recipe=FAST)(kind, fraction)

    box = poisoning_explorer(grid_runs, small.x_test, small.y_test, compute=compute, live=True)
    assert asked == []  # the first view is in the results
    slider = next(c for c in box.children if isinstance(c, widgets.FloatSlider))
    slider.value = 0.37
    assert asked == [("label flip", 0.37)]
    slider.value = 0.1
    slider.value = 0.37  # computed once, then kept by this explorer
    assert asked == [("label flip", 0.37)]
