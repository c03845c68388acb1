"""Hand-written optimizers equal torch.optim step for step; minimize follows the update rule; rates, schedules."""

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gdsec import landscape, optim

LRS = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "rmsprop": 0.01, "adam": 0.01}


def _loss(w: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((w - target) ** 4).sum() + (w**2).sum()


@pytest.mark.parametrize("name", optim.UPDATE_RULES)
def test_matches_torch_optim_for_100_steps(name):
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(7, generator=gen, dtype=torch.float64)
    target = torch.randn(7, generator=gen, dtype=torch.float64)
    ours, state = start.clone(), {}
    reference = torch.nn.Parameter(start.clone())
    torch_opt = optim.torch_optimizer(name, [reference], lr=LRS[name])
    for _ in range(100):
        current = ours.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(_loss(current, target), current)
        ours, state = optim.step(name, ours, grad, state, lr=LRS[name])
        torch_opt.zero_grad()
        _loss(reference, target).backward()
        torch_opt.step()
    assert (ours - reference.detach()).abs().max() < 1e-12


@settings(max_examples=25, deadline=None)
@given(lr=st.floats(1e-4, 1.0), beta=st.floats(0.0, 0.99))
def test_momentum_matches_torch_for_any_hyperparameters(lr, beta):
    start = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    ours, state = start.clone(), {}
    reference = torch.nn.Parameter(start.clone())
    torch_opt = optim.torch_optimizer("momentum", [reference], lr=lr, beta=beta)
    for _ in range(20):
        grad = 2 * ours
        ours, state = optim.momentum_step(ours, grad, state, lr=lr, beta=beta)
        torch_opt.zero_grad()
        (reference**2).sum().backward()
        torch_opt.step()
    assert torch.allclose(ours, reference.detach(), rtol=1e-9, atol=1e-9)


def test_step_is_pure():
    param, grad = torch.ones(3), torch.full((3,), 2.0)
    state = {"m": torch.zeros(3), "v": torch.zeros(3), "t": 0}
    new, new_state = optim.adam_step(param, grad, state, lr=0.1)
    assert torch.equal(param, torch.ones(3)) and torch.equal(grad, torch.full((3,), 2.0))
    assert state["t"] == 0 and torch.equal(state["m"], torch.zeros(3))
    assert new_state["t"] == 1 and not torch.equal(new, param)


def test_minimize_on_quadratic_matches_closed_form():
    fn = landscape.quadratic((1.0, 4.0))
    path = optim.minimize(fn, (1.0, 1.0), lr=0.1, steps=10)
    assert path.shape == (11, 2)
    expected = torch.tensor([(1 - 0.1) ** 10, (1 - 0.4) ** 10], dtype=torch.float64)
    assert torch.allclose(path[-1], expected)


def test_minimize_stops_on_divergence_and_noise_is_seeded():
    fn = landscape.quadratic((1.0, 10.0))
    assert len(optim.minimize(fn, (1.0, 1.0), lr=0.5, steps=500)) < 501
    a = optim.minimize(fn, (1.0, 1.0), lr=0.05, steps=20, grad_noise=0.5, seed=3)
    b = optim.minimize(fn, (1.0, 1.0), lr=0.05, steps=20, grad_noise=0.5, seed=3)
    c = optim.minimize(fn, (1.0, 1.0), lr=0.05, steps=20, grad_noise=0.5, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"lr": 0.0}, "lr"),
        ({"lr": -1.0}, "lr"),
        ({"steps": 0}, "steps"),
        ({"grad_noise": -1.0}, "grad_noise"),
    ],
)
def test_minimize_rejects(kwargs, message):
    args = {"lr": 0.1, "steps": 5, **kwargs}
    with pytest.raises(ValueError, match=message):
        optim.minimize(landscape.quadratic(), (1.0, 1.0), **args)


def test_torch_optimizer_rejects_unknown():
    with pytest.raises(ValueError, match="optimizer"):
        optim.torch_optimizer("sgdw", [torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        optim.step("sgd", torch.zeros(1), torch.zeros(1), {}, lr=0)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_unknown_hyperparameters_raise_value_error_naming_them(name):
    params = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match="momentum"):
        optim.torch_optimizer(name, params, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="weight_decay"):
        optim.step(name, torch.zeros(1), torch.zeros(1), {}, lr=0.1, weight_decay=0.1)
    with pytest.raises(ValueError, match="gamma"):
        optim.minimize(
            landscape.quadratic(), (1.0, 1.0), optimizer=name, lr=0.1, steps=2, gamma=1.0
        )
    for key in optim.HYPERPARAMETERS[name]:  # every declared key is accepted by both
        value = 0.5 if key != "eps" else 1e-8
        optim.torch_optimizer(name, params, lr=0.1, weight_decay=0.01, **{key: value})
        optim.step(name, torch.ones(1), torch.ones(1), {}, lr=0.1, **{key: value})


def test_weight_decay_reaches_torch_optimizer():
    params = [torch.nn.Parameter(torch.zeros(1))]
    assert (
        optim.torch_optimizer("sgd", params, lr=0.1, weight_decay=0.25).param_groups[0][
            "weight_decay"
        ]
        == 0.25
    )
    assert (
        optim.torch_optimizer("momentum", params, lr=0.1, beta=0.5).param_groups[0]["momentum"]
        == 0.5
    )


def test_nesterov_looks_ahead_by_beta_v_and_converges_on_an_ill_conditioned_bowl():
    param, grad = torch.tensor([1.0], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64)
    heavy, _ = optim.momentum_step(param, grad, {}, lr=0.1, beta=0.5)
    ahead, state = optim.nesterov_step(param, grad, {}, lr=0.1, beta=0.5)
    assert heavy.item() == pytest.approx(0.8) and ahead.item() == pytest.approx(0.7)
    second, _ = optim.nesterov_step(ahead, grad, state, lr=0.1, beta=0.5)
    assert second.item() == pytest.approx(0.7 - 0.1 * (2.0 + 0.5 * (0.5 * 2.0 + 2.0)))
    bowl = landscape.quadratic((1.0, 100.0))
    beta = (math.sqrt(100.0) - 1) / (math.sqrt(100.0) + 1)
    path = optim.minimize(bowl, (1.0, 1.0), optimizer="nesterov", lr=0.01, beta=beta, steps=300)
    plain = optim.minimize(bowl, (1.0, 1.0), optimizer="sgd", lr=0.01, steps=300)
    assert bowl(path[-1]).item() < 1e-20 < 1e-10 < bowl(plain[-1]).item()


@pytest.mark.integration
@settings(max_examples=12, deadline=None)
@given(lr=st.floats(1e-3, 0.05), beta=st.floats(0.0, 0.95), curvature=st.floats(1.0, 100.0))
def test_momentum_rate_is_the_measured_contraction(lr, beta, curvature):
    rate = optim.momentum_rate(lr, beta, curvature)
    assume(0.3 < rate < 0.999)  # faster reaches exact zero in the window; divergence: the next test
    path = optim.minimize(
        landscape.quadratic((curvature,)),
        (1.0,),
        optimizer="momentum",
        lr=lr,
        beta=beta,
        steps=400,
        blowup=1e300,
    )
    assert len(path) == 401
    tail = path[200:, 0].abs()
    measured = float(tail.max() / path[100:200, 0].abs().max()) ** (1 / 100)
    assert measured == pytest.approx(rate, abs=0.02)


def test_momentum_rate_closed_forms_and_stability_region():
    assert optim.momentum_rate(0.05, 0.0, 10.0) == pytest.approx(0.5)
    assert optim.momentum_rate(0.25, 0.0, 10.0) == pytest.approx(1.5)
    kappa = 100.0
    beta = ((math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)) ** 2
    lr = 4 / (math.sqrt(kappa) + 1) ** 2
    for curvature in (1.0, kappa):
        assert optim.momentum_rate(lr, beta, curvature) == pytest.approx(math.sqrt(beta), rel=1e-6)
    for beta in (0.0, 0.5, 0.9):
        edge = 2 * (1 + beta)
        assert (
            optim.momentum_rate(0.999 * edge, beta, 1.0)
            < 1
            < optim.momentum_rate(1.001 * edge, beta, 1.0)
        )


@pytest.mark.parametrize(
    "kwargs, message",
    [({"lr": 0.0}, "lr"), ({"beta": 1.0}, "beta"), ({"curvature": -1.0}, "curvature")],
)
def test_momentum_rate_rejects(kwargs, message):
    args = {"lr": 0.1, "beta": 0.5, "curvature": 1.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        optim.momentum_rate(**args)


def test_lr_schedules():
    assert torch.equal(
        optim.lr_schedule("constant", lr=0.1, steps=4), torch.full((4,), 0.1, dtype=torch.float64)
    )
    inverse = optim.lr_schedule("inverse", lr=0.1, steps=100_000, tau=10.0)
    assert inverse[0] == pytest.approx(0.1) and inverse[10] == pytest.approx(0.05)
    # Robbins-Monro: the sum grows like log(t) without bound, the sum of squares converges
    assert inverse[:100_000].sum() > inverse[:1000].sum() + 0.9 * 0.1 * 10 * math.log(100)
    assert (inverse**2).sum() < 0.1**2 * 10 * 1.1 + 0.01
    cosine = optim.lr_schedule("cosine", lr=0.2, steps=100)
    assert (
        cosine[0] == pytest.approx(0.2)
        and cosine[50] == pytest.approx(0.1)
        and 0 < cosine[-1] < 1e-3
    )
    assert (cosine[1:] < cosine[:-1]).all()
    step = optim.lr_schedule("step", lr=1.0, steps=9)
    assert step.tolist() == pytest.approx([1.0] * 3 + [0.1] * 3 + [0.01] * 3)
    assert optim.lr_schedule("inverse", lr=1.0, steps=100)[10] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "args, message",
    [
        ({"name": "warmup"}, "schedule"),
        ({"lr": -0.1}, "lr"),
        ({"steps": 0}, "steps"),
        ({"tau": 0.0}, "tau"),
        ({"name": "cosine", "tau": 5.0}, "tau"),
    ],
)
def test_lr_schedule_rejects(args, message):
    kwargs = {"name": "inverse", "lr": 0.1, "steps": 10, **args}
    with pytest.raises(ValueError, match=message):
        optim.lr_schedule(kwargs.pop("name"), **kwargs)
