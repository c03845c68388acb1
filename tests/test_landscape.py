"""Test surfaces, the measured stability bound and Hessian power iteration."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gdsec import data, landscape, models


@pytest.mark.parametrize("name", sorted(landscape.SURFACES))
def test_surfaces_are_vectorised_and_minima_are_stationary(name):
    surf = landscape.surface(name)
    grid_x, grid_y, z = landscape.evaluate_grid(surf.fn, surf.xlim, surf.ylim, n=7)
    assert z.shape == (7, 7)
    for minimum in surf.minima:
        point = torch.tensor(minimum, dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(surf.fn(point), point)
        assert grad.norm() < 1e-3


@settings(max_examples=15, deadline=None)
@given(curvature=st.floats(0.2, 50.0))
def test_critical_lr_is_two_over_L(curvature):
    measured = landscape.critical_lr(landscape.quadratic((0.1, curvature)), (1.0, 1.0))
    assert abs(measured - 2 / curvature) / (2 / curvature) < 0.01


def test_hessian_top_eigenvalue_on_quadratic():
    curvatures = torch.tensor([1.0, 3.0, 7.5], dtype=torch.float64)
    w = torch.ones(3, dtype=torch.float64, requires_grad=True)
    top = landscape.hessian_top_eigenvalue(lambda: 0.5 * (curvatures * w * w).sum(), [w], iters=200)
    assert abs(top - 7.5) < 1e-3


def test_sharpness_matches_full_hessian_on_tiny_model():
    split = data.load_digits()
    model = models.logistic_regression(seed=0).double()
    x, y = split.x_train[:64].double(), split.y_train[:64]
    params = list(model.parameters())
    sizes = [p.numel() for p in params]

    def loss_of(flat):
        chunks = torch.split(flat, sizes)
        weight, bias = (c.reshape(p.shape) for c, p in zip(chunks, params, strict=True))
        return torch.nn.functional.cross_entropy(x.reshape(64, -1) @ weight.T + bias, y)

    flat = torch.cat([p.detach().reshape(-1) for p in params])
    hessian = torch.autograd.functional.hessian(loss_of, flat)
    exact = torch.linalg.eigvalsh(hessian).abs().max().item()
    model.train()
    estimate = landscape.sharpness(model, x, y, iters=300, tol=1e-8)
    assert abs(estimate - exact) / exact < 1e-3
    assert model.training and all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: landscape.surface("everest"), "name"),
        (lambda: landscape.quadratic(()), "curvatures"),
        (lambda: landscape.quadratic((1.0, -1.0)), "curvatures"),
        (lambda: landscape.evaluate_grid(landscape.quadratic(), (1.0, 0.0), (0.0, 1.0)), "xlim"),
        (lambda: landscape.critical_lr(landscape.quadratic(), (1.0, 1.0), low=0.0), "low"),
        (lambda: landscape.critical_lr(landscape.quadratic((1.0, 10.0)), (1.0, 1.0), low=0.5), "low"),
        (lambda: landscape.hessian_top_eigenvalue(lambda: torch.tensor(0.0), [torch.zeros(1)]), "params"),
        (lambda: landscape.sharpness("model", torch.zeros(1, 64), torch.zeros(1, dtype=torch.long)), "model"),
    ],
)
def test_landscape_rejects(call, message):
    with pytest.raises(ValueError, match=message):
        call()
