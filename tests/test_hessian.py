"""Lanczos extremes of the Hessian (gdsec.hessian) against exact eigenvalues."""

import copy

import pytest
import torch

from gdsec import hessian, models


def _quadratic(curvatures):
    c = torch.tensor(curvatures, dtype=torch.float64)
    w = torch.ones(len(curvatures), dtype=torch.float64, requires_grad=True)
    return (lambda: 0.5 * (c * w * w).sum()), [w]


def test_extremes_of_an_indefinite_quadratic_are_the_algebraic_ones():
    loss, params = _quadratic([-9.0, 1.0, 3.0, 7.5])
    result = hessian.hessian_extremes(loss, params)
    assert abs(result.lambda_max - 7.5) < 1e-8 and abs(result.lambda_min + 9.0) < 1e-8
    assert result.converged and result.steps <= 4
    # the largest-magnitude eigenvalue is -9: sharpness must still be the top one
    assert abs(hessian.hessian_extremes(loss, params, steps=200).lambda_max - 7.5) < 1e-8


@pytest.fixture(scope="module")
def tiny(digits):
    x, y = digits.x_train[:60].double(), digits.y_train[:60] % 3
    return models.mlp(64, 3, hidden=4, seed=0).double(), x, y


def test_curvature_matches_full_hessian_on_tiny_mlp(tiny):
    model, x, y = tiny
    exact = torch.linalg.eigvalsh(hessian.full_hessian(model, x, y))
    model.train()
    result = hessian.curvature(model, x, y, steps=300, tol=1e-10)
    scale = exact.abs().max().item()
    assert result.converged
    assert abs(result.lambda_max - exact[-1].item()) < 1e-8 * scale
    assert abs(result.lambda_min - exact[0].item()) < 1e-8 * scale
    assert hessian.sharpness(model, x, y) == pytest.approx(exact[-1].item(), rel=1e-3)
    assert model.training and all(p.grad is None for p in model.parameters())


@pytest.mark.integration
def test_curvature_where_the_most_negative_eigenvalue_dominates(digits):
    x, y = digits.x_train[:60].double(), digits.y_train[:60] % 3
    model = models.mlp(64, 3, hidden=4, activation="sigmoid", seed=0).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(30):  # gradient *ascent*: a point of strong negative curvature
        opt.zero_grad()
        (-torch.nn.functional.cross_entropy(model(x), y)).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    exact = torch.linalg.eigvalsh(hessian.full_hessian(model, x, y))
    assert (
        -exact[0] > 100 * exact[-1] > 0
    )  # the premise: |lambda_min| is by far the largest magnitude
    result = hessian.curvature(model, x, y, steps=300, tol=1e-10)
    assert result.converged
    assert abs(result.lambda_min - exact[0].item()) < 1e-6 * abs(exact[0].item())
    assert abs(result.lambda_max - exact[-1].item()) < 1e-3 * exact[-1].item()
    assert 0 < hessian.sharpness(model, x, y, steps=300, tol=1e-10) < 2 * exact[-1].item()


def test_non_convergence_is_reported_and_runs_are_seeded(tiny):
    model, x, y = tiny
    short = hessian.curvature(model, x, y, steps=2)
    assert not short.converged and short.steps == 2
    full = hessian.curvature(model, x, y, steps=300)
    assert (
        full.converged and 2 < full.steps <= 50
    )  # stops on its residual, long before the 275 dimensions
    assert hessian.curvature(model, x, y, seed=3) == hessian.curvature(model, x, y, seed=3)


def test_full_hessian_is_symmetric_and_leaves_grads(tiny):
    model, x, y = tiny
    model = copy.deepcopy(model)
    h = hessian.full_hessian(model, x, y)
    assert h.shape == (275, 275) and torch.allclose(h, h.T, atol=1e-10)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: hessian.hessian_extremes(lambda: torch.tensor(0.0), [torch.zeros(1)]), "params"),
        (lambda: hessian.hessian_extremes(*_quadratic([1.0]), steps=0), "steps"),
        (lambda: hessian.hessian_extremes(*_quadratic([1.0]), tol=-1.0), "tol"),
        (lambda: hessian.hessian_extremes(*_quadratic([1.0]), seed=-1), "seed"),
        (
            lambda: hessian.sharpness(
                "model", torch.zeros(1, 64), torch.zeros(1, dtype=torch.long)
            ),
            "model",
        ),
        (
            lambda: hessian.sharpness(
                models.mlp(seed=0), torch.zeros(1, 64), torch.zeros(2, dtype=torch.long)
            ),
            "y",
        ),
        (
            lambda: hessian.curvature(
                models.mlp(seed=0), torch.zeros(0, 64), torch.zeros(0, dtype=torch.long)
            ),
            "x",
        ),
        (
            lambda: hessian.full_hessian(
                "not a model", torch.zeros(1, 64), torch.zeros(1, dtype=torch.long)
            ),
            "model",
        ),
        (
            lambda: hessian.full_hessian(
                models.mlp(hidden=128, seed=0),
                torch.zeros(1, 1, 8, 8),
                torch.zeros(1, dtype=torch.long),
            ),
            "5000",
        ),
        (
            lambda: hessian.full_hessian(
                models.mlp(hidden=2, seed=0),
                torch.zeros(1, 1, 8, 8),
                torch.zeros(2, dtype=torch.long),
            ),
            "y",
        ),
    ],
)
def test_hessian_rejects(call, message):
    with pytest.raises(ValueError, match=message):
        call()


class _Extras(torch.nn.Module):
    """``net`` with an unused parameter, a buffer it reads, and (``double``) float64 logits."""

    def __init__(self, net: torch.nn.Module, double: bool = False) -> None:
        super().__init__()
        self.net, self.double_logits = net, double
        self.unused = torch.nn.Linear(64, 2)  # forward never calls it
        self.register_buffer("shift", torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x) + self.shift
        return z.double() if self.double_logits else z


@pytest.mark.parametrize("double", [False, True])
def test_curvature_ignores_unused_parameters_and_buffers(tiny, double):
    model, x, y = tiny
    net = copy.deepcopy(model).float()
    x = x.float()
    plain = hessian.curvature(net, x, y, steps=300, tol=1e-8)
    extras = hessian.curvature(_Extras(net, double), x, y, steps=300, tol=1e-8)
    assert extras.converged
    assert extras.lambda_max == pytest.approx(plain.lambda_max, rel=1e-4)
    assert extras.lambda_min == pytest.approx(min(plain.lambda_min, 0.0), rel=1e-4, abs=1e-6)


def test_hessian_of_a_loss_that_uses_no_parameter_is_zero():
    w = torch.ones(3, requires_grad=True)
    result = hessian.hessian_extremes(lambda: torch.tensor(2.0, requires_grad=True), [w])
    assert result.lambda_max == 0.0 and result.lambda_min == 0.0
