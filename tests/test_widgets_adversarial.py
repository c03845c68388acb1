"""Tests for the explorers of chapters 5 and 6 in gdsec.widgets.adversarial: the eps slider, per-row outcomes."""

from __future__ import annotations

import copy

import matplotlib.pyplot as plt
import pytest
import torch

from gdsec import verify
from gdsec.attacks import Budget, evaluate
from gdsec.widgets.adversarial import epsilon_explorer, robustness_explorer, row_outcomes

TINY = {"budget": Budget(steps=3, fab_steps=1, square_steps=10, check_rows=0), "seed": 0}


@pytest.fixture(scope="module")
def rows(digits):
    return digits.x_test[:40], digits.y_test[:40]


@pytest.fixture(scope="module")
def results(digits_cnn, rows):
    x, y = rows
    return {
        eps: (evaluate(digits_cnn, x, y, eps, **TINY), verify.certified(digits_cnn, x, y, eps))
        for eps in (0.0, 0.003, 0.2)
    }


def test_outcomes_follow_the_evaluation_and_the_proof(results, digits_cnn, rows) -> None:
    x, y = rows
    wrong = (digits_cnn(x).argmax(1) != y).tolist()
    evaluation, proved = results[0.0]
    outcomes = row_outcomes(evaluation, proved)
    assert outcomes == [
        "wrong when clean" if w else "proved (IBP)" for w in wrong
    ]  # eps = 0: IBP is exact
    evaluation, proved = results[0.2]
    outcomes = row_outcomes(evaluation, proved)
    assert (
        not proved.any() and outcomes.count("apgd-ce") > 20
    )  # eps = 0.2 breaks most rows of a standard CNN
    for outcome, broke, w in zip(outcomes, evaluation.broken_by, wrong, strict=True):
        assert outcome == ("wrong when clean" if w else broke or "held (not proved)")
    evaluation, proved = results[0.003]
    outcomes = row_outcomes(evaluation, proved)
    assert 0 < outcomes.count("proved (IBP)") and outcomes.count("proved (IBP)") == int(
        proved.sum()
    )
    held = [o == "held (not proved)" for o in outcomes]
    assert held == (evaluation.robust & ~proved).tolist()


def test_a_proved_row_that_an_attack_broke_is_an_error(results) -> None:
    evaluation, _ = results[0.2]
    with pytest.raises(ValueError, match="proved robust but was broken"):
        row_outcomes(evaluation, torch.ones(evaluation.n, dtype=torch.bool))


def test_outcomes_reject_bad_arguments(results) -> None:
    evaluation, proved = results[0.2]
    with pytest.raises(ValueError, match="evaluation"):
        row_outcomes("eval", proved)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="proved"):
        row_outcomes(evaluation, proved[:-1])
    with pytest.raises(ValueError, match="proved"):
        row_outcomes(evaluation, proved.float())


@pytest.mark.integration
def test_explorer_precomputes_every_setting_without_attacking(results, digits_cnn) -> None:
    model = copy.deepcopy(digits_cnn)
    grid = {(name, eps): results[eps] for name in ("a", "b") for eps in (0.003, 0.2)}
    before = plt.get_fignums()
    box = robustness_explorer(grid, {"a": model, "b": model}, show=(0, 1, 2), live=False)
    stack = box.children[3]
    assert len(stack.children) == 2 and all(len(inner.children) == 2 for inner in stack.children)
    assert plt.get_fignums() == before  # every figure was closed after rendering


def test_explorer_rejects_incomplete_or_unknown_settings(results, digits_cnn) -> None:
    full = {(name, eps): results[eps] for name in ("a", "b") for eps in (0.003, 0.2)}
    models = {"a": digits_cnn, "b": digits_cnn}
    missing = {k: v for k, v in full.items() if k != ("b", 0.2)}
    with pytest.raises(ValueError, match="missing the setting"):
        robustness_explorer(missing, models, live=False)
    with pytest.raises(ValueError, match="does not hold"):
        robustness_explorer({**full, ("c", 0.2): results[0.2]}, models, live=False)
    with pytest.raises(ValueError, match="show"):
        robustness_explorer(full, models, show=(0, 40), live=False)
    with pytest.raises(ValueError, match="pair"):
        robustness_explorer({**full, ("a", 0.2): results[0.2][0]}, models, live=False)
    with pytest.raises(ValueError, match="models"):
        robustness_explorer(full, {}, live=False)


def _controls(box) -> int:
    """How many controls (sliders, dropdowns, toggles) an explorer shows."""
    import ipywidgets as widgets

    return sum(isinstance(child, widgets.ValueWidget) for child in box.children)


@pytest.mark.integration
def test_epsilon_explorer_adds_an_attack_control_for_several_attacks(digits_cnn, rows) -> None:
    x, y = rows
    one = epsilon_explorer(
        digits_cnn, x, y, attack="fgsm", eps_values=(0.0, 0.1), indices=(0, 1), live=False
    )
    two = epsilon_explorer(
        digits_cnn, x, y, attack=("fgsm", "pgd"), eps_values=(0.0, 0.1), indices=(0, 1), live=False
    )
    assert _controls(two) == _controls(one) + 1
    plt.close("all")
    for bad in (("fgsm", "fgsm"), "cw", ()):
        with pytest.raises(ValueError, match="attack"):
            epsilon_explorer(
                digits_cnn, x, y, attack=bad, eps_values=(0.0,), indices=(0,), live=False
            )
