"""gdsec.masking.checks: every sanity check fires on a model built to trip it and stays quiet on an
honest MLP; the evidence it reads is what it says it is."""

import copy
from dataclasses import replace

import pytest
import torch
from torch import nn

from gdsec import masking
from gdsec.attacks import Budget, is_randomised

EPS = 0.15
FAST = {"eps": EPS, "budget": Budget(steps=10, square_steps=200, draws=8)}


class _Reversed(nn.Module):
    """Value ``x``, gradient ``-1``: every gradient step walks the wrong way."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x.detach() - x


@pytest.fixture(scope="module")
def rows(digits):
    return digits.x_test[:100], digits.y_test[:100]


@pytest.fixture(scope="module")
def honest(digits_mlp, digits_cnn, rows):
    x, y = rows
    return masking.sanity_checks(copy.deepcopy(digits_mlp), x, y, surrogate=digits_cnn, **FAST)


def test_every_check_is_documented_and_quiet_on_an_honest_mlp(honest):
    assert set(honest.checks) == set(masking.SANITY_CHECKS)
    assert not honest.masked and all(honest.checks.values()) and honest.reasons == {}, (
        honest.reasons
    )
    ev = honest.evidence
    assert ev["zero_gradient_rows"] == 0 and ev["randomised"] == 0 and ev["pgd_unbounded"] <= 0.02
    assert ev["pgd_double_eps"] <= ev["pgd"] <= ev["pgd_half_eps"] and ev["noise"] > ev["pgd"] + 0.3
    assert (
        ev["stronger"] <= min(ev["pgd_more_steps"], ev["apgd"])
        and ev["stronger"] >= ev["pgd"] - 0.05
    )


def _trip(model, rows, check, **kwargs):
    x, y = rows
    report = masking.sanity_checks(model, x, y, **{**FAST, **kwargs})
    assert report.masked and not report.checks[check], (check, report.evidence)
    assert check in report.reasons and report.reasons[check]
    return report


def test_single_step_check_fires_when_the_random_start_lands_in_the_mask(digits_mlp, rows):
    report = _trip(
        masking.OffGridSaturation(copy.deepcopy(digits_mlp)), rows, "iterative_beats_single_step"
    )
    assert report.evidence["fgsm"] < report.evidence["pgd"] - 0.4
    assert report.checks["no_zero_gradients"], (
        "the clean digits sit on the grid, where gradients are honest"
    )


@pytest.mark.integration
def test_convergence_check_fires_on_the_exploding_purifier(digits, digits_mlp, rows):
    generator = masking.fit_generator(digits.x_train, components=20)
    report = _trip(
        masking.defend(copy.deepcopy(digits_mlp), "purify", generator=generator), rows, "converged"
    )
    assert report.evidence["stronger"] < report.evidence["pgd"] - 0.1
    assert report.checks["no_zero_gradients"] and report.checks["deterministic"]


@pytest.mark.integration
def test_monotonicity_check_fires_when_a_larger_budget_lands_in_the_mask(digits_mlp, rows):
    x, _ = rows
    report = _trip(
        masking.FarSaturation(copy.deepcopy(digits_mlp), x, radius=0.2), rows, "eps_monotone"
    )
    assert report.evidence["pgd_double_eps"] > report.evidence["pgd"] + 0.3
    assert report.checks["converged"] and report.checks["no_zero_gradients"]


def test_noise_check_fires_when_the_gradient_points_the_wrong_way(digits_mlp, rows):
    report = _trip(
        nn.Sequential(_Reversed(), copy.deepcopy(digits_mlp)), rows, "beats_random_noise"
    )
    assert report.evidence["noise"] < report.evidence["pgd"] - 0.05
    assert report.checks["no_zero_gradients"]


def test_zero_gradient_check_counts_rows_of_a_saturated_softmax(digits_mlp, rows):
    report = _trip(
        masking.defend(copy.deepcopy(digits_mlp), "temperature", temperature=1000.0),
        rows,
        "no_zero_gradients",
    )
    ev = report.evidence
    assert ev["zero_gradient_rows"] > 50 and ev["zero_gradient_fraction"] == pytest.approx(
        ev["zero_gradient_rows"] / round(100 * ev["clean"])
    )
    assert (
        f"{ev['zero_gradient_rows']:.0f} correctly classified rows"
        in report.reasons["no_zero_gradients"]
    )


@pytest.mark.integration
def test_randomness_check_fires_and_the_evaluation_switches_to_eot(digits_mlp, rows):
    x, y = rows
    model = masking.defend(copy.deepcopy(digits_mlp), "random", levels=17, noise=0.05, seed=3)
    assert is_randomised(model, x) and not is_randomised(digits_mlp, x)
    report = _trip(model, rows, "deterministic", budget=replace(FAST["budget"], draws=4))
    assert report.evidence["randomised"] == 1.0 and "EOT" in report.reasons["deterministic"]


def test_blackbox_transfer_and_unbounded_checks_fire_on_a_saturated_softmax(digits_mlp, rows):
    base = copy.deepcopy(digits_mlp)
    saturated = masking.defend(base, "temperature", temperature=1000.0)
    report = _trip(saturated, rows, "whitebox_beats_blackbox", surrogate=base)
    assert (
        not report.checks["whitebox_beats_transfer"] and not report.checks["unbounded_reaches_zero"]
    )
    assert (
        report.evidence["transfer"] < report.evidence["pgd"] - 0.5
        and report.evidence["pgd_unbounded"] > 0.2
    )


def test_random_noise_stays_in_the_ball_and_is_reproducible(digits_mlp, rows):
    x, y = rows
    a = masking.random_noise(digits_mlp, x, y, EPS, points=5, seed=1)
    assert (a - x).abs().max() <= EPS + 1e-6 and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, masking.random_noise(digits_mlp, x, y, EPS, points=5, seed=1))
    assert not torch.equal(a, masking.random_noise(digits_mlp, x, y, EPS, points=5, seed=2))
    more = masking.random_noise(digits_mlp, x, y, EPS, points=40, seed=1)
    with torch.no_grad():
        survive = [(digits_mlp(t).argmax(1) == y).float().mean().item() for t in (x, a, more)]
    assert survive[2] <= survive[1] <= survive[0]


def test_sanity_checks_leave_inputs_and_model_state_alone(digits_mlp, rows):
    model = copy.deepcopy(digits_mlp)
    x, y = rows[0][:30].clone(), rows[1][:30].clone()
    before = x.clone()
    model.train()
    masking.sanity_checks(
        model, x, y, eps=EPS, budget=Budget(steps=2, square_steps=5, noise_points=2)
    )
    assert (
        model.training
        and all(p.grad is None for p in model.parameters())
        and torch.equal(x, before)
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"eps": 0.0},
        {"eps": 1.5},
        {"eps": 0.1, "steps": 10},
        {"eps": 0.1, "budget": {"steps": 2}},
        {"eps": 0.1, "tol": -0.1},
        {"eps": 0.1, "surrogate": "model"},
        {"eps": 0.1, "seed": -1},
        {"eps": 0.1, "budget": Budget(steps=2), "unknown": 1},
    ],
)
def test_bad_arguments_raise_value_error(digits_mlp, rows, kwargs):
    x, y = rows
    with pytest.raises(ValueError):
        masking.sanity_checks(digits_mlp, x[:10], y[:10], **kwargs)


@pytest.mark.parametrize(
    "call",
    [
        lambda m, x, y: masking.random_noise(m, x, y, 0.1, points=0),
        lambda m, x, y: masking.random_noise(m, x, y, 1.5),
        lambda m, x, y: masking.random_noise(m, x, y, 0.1, seed=-1),
        lambda m, x, y: is_randomised("model", x),
        lambda m, x, y: masking.sanity_checks(m, x * 2, y, eps=0.1),
    ],
)
def test_helpers_reject_bad_arguments(digits_mlp, rows, call):
    x, y = rows
    with pytest.raises(ValueError):
        call(digits_mlp, x[:10], y[:10])
