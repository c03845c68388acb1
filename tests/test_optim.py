"""Hand-written optimizers equal torch.optim step for step; minimize follows the update rule."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gdsec import landscape, optim

LRS = {"sgd": 0.1, "momentum": 0.05, "rmsprop": 0.01, "adam": 0.01}


def _loss(w: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((w - target) ** 4).sum() + (w**2).sum()


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
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
    assert (ours - reference.detach()).abs().max() < 1e-6


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
        optim.minimize(landscape.quadratic(), (1.0, 1.0), optimizer=name, lr=0.1, steps=2, gamma=1.0)
    for key in optim.HYPERPARAMETERS[name]:  # every declared key is accepted by both
        value = 0.5 if key != "eps" else 1e-8
        optim.torch_optimizer(name, params, lr=0.1, weight_decay=0.01, **{key: value})
        optim.step(name, torch.ones(1), torch.ones(1), {}, lr=0.1, **{key: value})


def test_weight_decay_reaches_torch_optimizer():
    params = [torch.nn.Parameter(torch.zeros(1))]
    assert optim.torch_optimizer("sgd", params, lr=0.1, weight_decay=0.25).param_groups[0]["weight_decay"] == 0.25
    assert optim.torch_optimizer("momentum", params, lr=0.1, beta=0.5).param_groups[0]["momentum"] == 0.5
