"""Tests for gdsec.verify: interval bounds are sound, exact at eps = 0, monotone, and hand-checkable."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from gdsec import attacks, masking, models, train, verify

TOL = 1e-5


def _linear(weight: list[list[float]], bias: list[float]) -> nn.Linear:
    layer = nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))
    return layer


def _hand_model() -> nn.Sequential:
    """h = relu([x1 - x2, x1 + x2]); z = [2 h1 + h2, -h1 + h2 - 0.5]."""
    return nn.Sequential(
        _linear([[1, -1], [1, 1]], [0, 0]), nn.ReLU(), _linear([[2, 1], [-1, 1]], [0, -0.5])
    )


def _in_box(x: torch.Tensor, eps: float, samples: int, seed: int, *, corners: bool) -> torch.Tensor:
    """``samples`` points per row of ``x``, uniform in the clipped box or on its corners; shape (samples, N, ...)."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand((samples, *x.shape), generator=gen)
    step = (u.round() * 2 - 1) if corners else (u * 2 - 1)
    return (x + eps * step).clamp(0, 1)


def _in_l2_ball(x: torch.Tensor, eps: float, samples: int, seed: int) -> torch.Tensor:
    """Points on the L2 sphere of radius ``eps`` around each row, clipped to [0, 1] (still in the ball)."""
    gen = torch.Generator().manual_seed(seed)
    d = torch.randn((samples, *x.shape), generator=gen)
    norms = (
        d.reshape(samples, x.shape[0], -1)
        .norm(dim=2)
        .reshape(samples, x.shape[0], *[1] * (x.dim() - 1))
    )
    return (x + eps * d / norms).clamp(0, 1)


@pytest.fixture(scope="module")
def rows(digits):
    return digits.x_test[:60], digits.y_test[:60]


@pytest.fixture(scope="module")
def ibp_mlp(digits) -> nn.Module:
    model = models.mlp(64, 10, hidden=64, seed=0)
    verify.ibp_train(model, digits.x_train, digits.y_train, eps=0.1, epochs=30)
    return model


def _models(name: str, request) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    if name == "blobs":
        model, x, y = request.getfixturevalue("blobs_mlp")
        return model, x, y
    x, y = request.getfixturevalue("rows")
    if name == "tanh":
        return models.mlp(64, 10, hidden=16, activation="tanh", seed=3), x, y
    return request.getfixturevalue(name), x, y


# ------------------------------------------------------------------ soundness


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn", "blobs", "tanh"])
@pytest.mark.parametrize("corners", [False, True])
def test_sampled_points_stay_inside_the_bounds(name: str, corners: bool, request) -> None:
    model, x, y = _models(name, request)
    eps = 0.03
    lower, upper = verify.interval_bounds(model, x, eps)
    bound = verify.margin_lower_bound(model, x, y, eps)
    with torch.no_grad():
        for point in _in_box(x, eps, 16, seed=1, corners=corners):
            logits = model(point)
            assert (logits >= lower - TOL).all() and (logits <= upper + TOL).all()
            assert (attacks.margin(logits, y) >= bound - TOL).all()


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn", "blobs"])
def test_pgd_points_stay_inside_the_bounds_and_never_break_a_certified_row(
    name: str, request
) -> None:
    model, x, y = _models(name, request)
    eps = {"digits_mlp": 0.02, "digits_cnn": 0.005, "blobs": 0.05}[name]
    x_adv = attacks.pgd(model, x, y, eps, steps=20, seed=0)
    lower, upper = verify.interval_bounds(model, x, eps)
    proved = verify.certified(model, x, y, eps)
    with torch.no_grad():
        logits = model(x_adv)
    assert (logits >= lower - TOL).all() and (logits <= upper + TOL).all()
    assert proved.sum() >= 5  # the check below has rows to check
    assert (logits[proved].argmax(1) == y[proved]).all()


def test_l2_bounds_are_sound_and_tighter_than_the_box(request) -> None:
    model, x, y = _models("digits_mlp", request)
    eps = 0.1
    bound = verify.margin_lower_bound(model, x, y, eps, norm="2")
    with torch.no_grad():
        for point in _in_l2_ball(x, eps, 16, seed=2):
            assert (attacks.margin(model(point), y) >= bound - TOL).all()
    box = verify.margin_lower_bound(model, x, y, eps, norm="inf")
    assert (bound >= box - TOL).all() and (bound > box + 0.1).float().mean() > 0.5


@pytest.fixture(scope="module")
def logistic(digits) -> nn.Module:
    model = models.logistic_regression(seed=0)
    train.train(
        model, digits.x_train, digits.y_train, optimizer="adam", lr=0.05, epochs=20, progress=False
    )
    return model


@pytest.mark.parametrize("name", ["digits_mlp", "logistic"])
def test_l2_bounds_hold_at_l2_pgd_points(name: str, request) -> None:
    model, (x, y) = request.getfixturevalue(name), request.getfixturevalue("rows")
    eps = 0.5
    bound = verify.margin_lower_bound(model, x, y, eps, norm="2")
    x_adv = attacks.pgd(model, x, y, eps, norm="2", steps=40, seed=0)
    with torch.no_grad():
        assert (attacks.margin(model(x_adv), y) >= bound - TOL).all()


@pytest.mark.parametrize("first", ["linear", "conv"])
def test_l2_bounds_of_a_first_affine_layer_are_attained(first: str) -> None:
    """Inside the box, the L2 upper bound of unit i is reached at x + eps * row_i / ||row_i||."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layer = (
            nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
            if first == "linear"
            else nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten())
        )
    x, eps = torch.full((1, 1, 8, 8), 0.5), 0.2
    upper = verify.interval_bounds(layer, x, eps, norm="2")[1][0]
    for unit in (0, 3, 7 if first == "conv" else 4, upper.numel() - 1):
        probe = x.clone().requires_grad_(True)
        (row,) = torch.autograd.grad(layer(probe)[0, unit], probe)
        with torch.no_grad():
            reached = layer(x + eps * row / row.norm())[0, unit]
        assert abs(reached.item() - upper[unit].item()) < TOL


def test_l2_bound_of_a_linear_model_uses_both_the_ball_and_the_box(logistic, rows) -> None:
    x, y = rows
    eps = 0.5
    weight, bias = logistic[1].weight.detach(), logistic[1].bias.detach()
    rows_c = weight[y][:, None, :] - weight[None, :, :]  # (N, K, 64)
    centre = (rows_c @ x.flatten(1)[:, :, None]).squeeze(2) + bias[y][:, None] - bias[None, :]
    ball = (centre - eps * rows_c.norm(dim=2)).scatter(1, y[:, None], float("inf")).amin(1)
    bound = verify.margin_lower_bound(logistic, x, y, eps, norm="2")
    box = verify.margin_lower_bound(logistic, x, y, eps, norm="inf")
    assert (bound >= ball - TOL).all() and (bound >= box - TOL).all()
    assert (bound > box + 0.1).float().mean() > 0.5


# ------------------------------------------------------------------ exactness and monotonicity


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn", "blobs"])
def test_eps_zero_gives_the_exact_logits(name: str, request) -> None:
    model, x, _ = _models(name, request)
    lower, upper = verify.interval_bounds(model, x, 0.0)
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(lower, logits, atol=TOL, rtol=0)
    torch.testing.assert_close(upper, logits, atol=TOL, rtol=0)


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn"])
def test_bounds_widen_and_certificates_shrink_with_eps(name: str, request) -> None:
    model, x, y = _models(name, request)
    previous = None
    for eps in (0.0, 0.005, 0.01, 0.02, 0.05):
        lower, upper = verify.interval_bounds(model, x, eps)
        bound = verify.margin_lower_bound(model, x, y, eps)
        if previous is not None:
            assert (lower <= previous[0] + TOL).all() and (upper >= previous[1] - TOL).all()
            assert (bound <= previous[2] + TOL).all()
        previous = (lower, upper, bound)
    assert verify.certified_accuracy(model, x, y, 0.0) > 0.9
    assert verify.certified_accuracy(model, x, y, 0.05) < verify.certified_accuracy(
        model, x, y, 0.005
    )


def test_hand_computed_two_layer_example() -> None:
    model = _hand_model()
    x, y = torch.tensor([[0.5, 0.5]]), torch.tensor([0])
    lower, upper = verify.interval_bounds(model, x, 0.1)
    # box [0.4, 0.6]^2 -> h1 in [-0.2, 0.2] -> [0, 0.2]; h2 in [0.8, 1.2]
    torch.testing.assert_close(lower, torch.tensor([[0.8, 0.1]]))
    torch.testing.assert_close(upper, torch.tensor([[1.6, 0.7]]))
    # elision: z1 - z2 = 3 h1 + 0.5 >= 0.5, tighter than lower(z1) - upper(z2) = 0.1
    torch.testing.assert_close(verify.margin_lower_bound(model, x, y, 0.1), torch.tensor([0.5]))
    no_elision = nn.Sequential(*model, nn.Identity())
    torch.testing.assert_close(
        verify.margin_lower_bound(no_elision, x, y, 0.1), torch.tensor([0.1])
    )
    assert verify.certified(model, x, torch.tensor([0]), 0.1).tolist() == [True]
    assert verify.certified(model, x, torch.tensor([1]), 0.1).tolist() == [False]


def test_the_input_box_is_clipped_to_the_unit_interval() -> None:
    x = torch.tensor([[0.02, 0.5, 0.97]])
    lower, upper = verify.interval_bounds(nn.Sequential(nn.Flatten()), x, 0.05)
    torch.testing.assert_close(lower, torch.tensor([[0.0, 0.45, 0.92]]))
    torch.testing.assert_close(upper, torch.tensor([[0.07, 0.55, 1.0]]))


def test_linear_models_are_certified_exactly(logistic, digits) -> None:
    """For one linear layer the elided bound is the true minimum, reached at a corner of the box."""
    model = logistic
    x, y, eps = digits.x_test[:100], digits.y_test[:100], 0.03
    weight = model[1].weight.detach()
    lower, upper = (x - eps).clamp(0, 1).flatten(1), (x + eps).clamp(0, 1).flatten(1)
    broken = torch.zeros(len(x), dtype=torch.bool)
    with torch.no_grad():
        for k in range(10):
            towards_k = torch.where(weight[y] - weight[k] > 0, lower, upper)  # minimises z_y - z_k
            m = model(towards_k)
            broken |= (m.gather(1, y[:, None]).squeeze(1) <= m[:, k]) & (y != k)
    proved = verify.certified(model, x, y, eps)
    assert 0 < proved.sum() < len(x)
    assert torch.equal(proved, ~broken)


# ------------------------------------------------------------------ IBP training


@pytest.mark.integration
def test_ibp_training_makes_rows_certifiable(ibp_mlp, digits_mlp, digits) -> None:
    x, y = digits.x_test, digits.y_test
    assert verify.certified_accuracy(digits_mlp, x, y, 0.1) < 0.05
    assert verify.certified_accuracy(ibp_mlp, x, y, 0.1) > 0.5
    assert train.accuracy(ibp_mlp, x, y) > 0.85
    proved = verify.certified(ibp_mlp, x, y, 0.1)
    x_adv = attacks.pgd(ibp_mlp, x[proved], y[proved], 0.1, steps=20, seed=0)
    assert (train.predict(ibp_mlp, x_adv) == y[proved]).all()


def test_ibp_training_is_deterministic_given_seed(digits) -> None:
    x, y = digits.x_train[:200], digits.y_train[:200]
    runs = []
    for _ in range(2):
        model = models.mlp(64, 10, hidden=16, seed=0)
        runs.append(verify.ibp_train(model, x, y, eps=0.05, epochs=3, seed=4))
    assert runs[0] == runs[1] and len(runs[0]) == 3
    other = verify.ibp_train(
        models.mlp(64, 10, hidden=16, seed=0), x, y, eps=0.05, epochs=3, seed=5
    )
    assert other != runs[0]


# ------------------------------------------------------------------ contract and bad inputs


def test_inputs_mode_and_grads_are_untouched(digits_cnn, rows) -> None:
    model = copy.deepcopy(digits_cnn).train()
    x, y = rows
    x_before = x.clone()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.25)
    lower, upper = verify.interval_bounds(model, x, 0.02)
    verify.certified_accuracy(model, x, y, 0.02, norm="2")
    assert torch.equal(x, x_before) and model.training
    assert all(torch.equal(p.grad, torch.full_like(p, 0.25)) for p in model.parameters())
    assert not lower.requires_grad and not upper.requires_grad


@pytest.mark.parametrize(
    ("layer", "named"),
    [
        (nn.BatchNorm1d(64), "BatchNorm1d"),
        (nn.Dropout(0.1), "Dropout"),
        (masking.Temperature(10.0), "Temperature"),
    ],
)
def test_unsupported_layers_are_named(layer: nn.Module, named: str, rows) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), layer, nn.Linear(64, 10))
    with pytest.raises(ValueError, match=named):
        verify.interval_bounds(model, rows[0], 0.1)
    with pytest.raises(ValueError, match=named):
        verify.certified(model, rows[0], rows[1], 0.1)


def test_bad_arguments_raise_naming_them(digits_mlp, rows) -> None:
    x, y = rows
    with pytest.raises(ValueError, match="model"):
        verify.interval_bounds("mlp", x, 0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="x"):
        verify.interval_bounds(digits_mlp, x * 2, 0.1)
    with pytest.raises(ValueError, match="x"):
        verify.interval_bounds(digits_mlp, x[0, 0, 0], 0.1)
    with pytest.raises(ValueError, match="eps"):
        verify.interval_bounds(digits_mlp, x, -0.1)
    with pytest.raises(ValueError, match="eps"):
        verify.certified(digits_mlp, x, y, float("nan"))
    with pytest.raises(ValueError, match="norm"):
        verify.interval_bounds(digits_mlp, x, 0.1, norm="1")
    with pytest.raises(ValueError, match="y"):
        verify.certified(digits_mlp, x, y[:-1], 0.1)
    with pytest.raises(ValueError, match="y"):
        verify.certified_accuracy(digits_mlp, x, y + 10, 0.1)
    with pytest.raises(ValueError, match="epochs"):
        verify.ibp_train(copy.deepcopy(digits_mlp), x, y, eps=0.1, epochs=0)
    with pytest.raises(ValueError, match="batch_size"):
        verify.ibp_train(copy.deepcopy(digits_mlp), x, y, eps=0.1, batch_size=0)
    with pytest.raises(ValueError, match="seed"):
        verify.ibp_train(copy.deepcopy(digits_mlp), x, y, eps=0.1, seed=-1)
