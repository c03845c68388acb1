"""Test surfaces, the measured stability bound, many starts at once, critical points, and the trap explorer."""

import copy

import ipywidgets as widgets
import matplotlib.pyplot as plt
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gdsec import hessian, landscape, models
from gdsec.optim import minimize
from gdsec.widgets.landscape import plot_trajectory, trap_explorer


@pytest.mark.parametrize("name", sorted(landscape.SURFACES))
def test_surfaces_are_vectorised_and_minima_are_stationary(name):
    surf = landscape.surface(name)
    grid_x, grid_y, z = landscape.evaluate_grid(surf.fn, surf.xlim, surf.ylim, n=7)
    assert z.shape == (7, 7)
    for minimum in surf.minima:
        point = torch.tensor(minimum, dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(surf.fn(point), point)
        assert grad.norm() < 1e-3


@pytest.mark.integration
@settings(max_examples=5, deadline=None)
@given(curvature=st.floats(0.2, 50.0))
def test_critical_lr_is_two_over_L(curvature):
    measured = landscape.critical_lr(landscape.quadratic((0.1, curvature)), (1.0, 1.0))
    assert abs(measured - 2 / curvature) / (2 / curvature) < 0.01


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: landscape.surface("everest"), "name"),
        (lambda: landscape.quadratic(()), "curvatures"),
        (lambda: landscape.quadratic((1.0, -1.0)), "curvatures"),
        (lambda: landscape.evaluate_grid(landscape.quadratic(), (1.0, 0.0), (0.0, 1.0)), "xlim"),
        (lambda: landscape.critical_lr(landscape.quadratic(), (1.0, 1.0), low=0.0), "low"),
        (
            lambda: landscape.critical_lr(landscape.quadratic((1.0, 10.0)), (1.0, 1.0), low=0.5),
            "low",
        ),
    ],
)
def test_landscape_rejects(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_descend_many_matches_minimize_for_each_start():
    surf = landscape.surface("himmelblau")
    starts = torch.tensor([[0.0, 0.0], [-0.6, -1.2], [2.0, -3.0]], dtype=torch.float64)
    ends = landscape.descend_many(surf.fn, starts, lr=0.05, steps=60)
    for start, end in zip(starts, ends, strict=True):
        assert torch.allclose(minimize(surf.fn, start, lr=0.05, steps=60)[-1], end, atol=1e-10)


def test_descend_many_marks_divergence_and_supports_optimizers():
    surf = landscape.surface("bowl")
    ends = landscape.descend_many(surf.fn, torch.tensor([[1.0, 1.0]]), lr=0.3, steps=100)
    assert torch.isnan(ends).all()
    adam_end = landscape.descend_many(
        surf.fn, torch.tensor([[1.0, 1.0]]), optimizer="adam", lr=0.05, steps=400
    )
    assert adam_end.abs().max() < 0.05


def test_step_size_decides_which_himmelblau_minima_are_reachable():
    surf = landscape.surface("himmelblau")
    axis = torch.linspace(-4.5, 4.5, 15, dtype=torch.float64)
    starts = torch.cartesian_prod(axis, axis)
    small = landscape.nearest_minimum(
        surf, landscape.descend_many(surf.fn, starts, lr=0.05, steps=300)
    )
    large = landscape.nearest_minimum(
        surf, landscape.descend_many(surf.fn, starts, lr=0.2, steps=300)
    )
    assert set(small.tolist()) == {0, 1, 2, 3}
    assert 2 not in set(large.tolist()) and 3 not in set(large.tolist())


def test_noise_escapes_saddle_plain_descent_does_not():
    surf = landscape.surface("saddle")
    at_saddle = torch.zeros(50, 2, dtype=torch.float64)
    plain = landscape.nearest_minimum(
        surf, landscape.descend_many(surf.fn, at_saddle, lr=0.1, steps=100), tol=0.1
    )
    noisy = landscape.nearest_minimum(
        surf,
        landscape.descend_many(surf.fn, at_saddle, lr=0.1, steps=100, grad_noise=0.05, seed=1),
        tol=0.1,
    )
    assert (plain == -1).all()
    assert (noisy >= 0).float().mean() > 0.9


def test_critical_point_kind_and_eigenvalues():
    saddle = landscape.surface("saddle").fn
    assert landscape.critical_point_kind(saddle, (0.0, 0.0)) == "saddle"
    assert landscape.critical_point_kind(saddle, (1.0, 0.0)) == "minimum"
    assert landscape.critical_point_kind(lambda w: -(w**2).sum(), (0.0, 0.0)) == "maximum"
    assert landscape.critical_point_kind(lambda w: w[0] ** 2 + 0 * w[1], (0.0, 0.0)) == "degenerate"
    assert torch.allclose(
        hessian.hessian_eigenvalues(saddle, (0.0, 0.0)),
        torch.tensor([-1.0, 1.0], dtype=torch.float64),
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda: landscape.descend_many(
            landscape.surface("bowl").fn, torch.zeros(3), lr=0.1, steps=5
        ),
        lambda: landscape.descend_many(
            landscape.surface("bowl").fn, torch.zeros(2, 2), lr=-0.1, steps=5
        ),
        lambda: landscape.descend_many(
            landscape.surface("bowl").fn, torch.zeros(2, 2), lr=0.1, steps=0
        ),
        lambda: landscape.descend_many(
            landscape.surface("bowl").fn, torch.full((1, 2), float("nan")), lr=0.1, steps=5
        ),
        lambda: landscape.descend_many(
            landscape.surface("bowl").fn, torch.zeros(1, 2), optimizer="lbfgs", lr=0.1, steps=5
        ),
        lambda: landscape.nearest_minimum(landscape.surface("bowl"), torch.zeros(3), tol=0.1),
        lambda: landscape.nearest_minimum(landscape.surface("bowl"), torch.zeros(1, 2), tol=0.0),
        lambda: landscape.critical_point_kind(landscape.surface("bowl").fn, (float("nan"), 0.0)),
        lambda: hessian.hessian_eigenvalues(landscape.surface("bowl").fn, ()),
        lambda: landscape.descend_many(
            landscape.surface("bowl").fn, torch.zeros(1, 2), lr=0.1, steps=5, momentum=0.9
        ),
    ],
)
def test_descent_helpers_reject_bad_arguments(call):
    with pytest.raises(ValueError):
        call()


def _images(widget):
    if isinstance(widget, widgets.Image):
        return [bytes(widget.value)]
    return [image for child in widget.children for image in _images(child)]


@pytest.mark.integration
def test_trap_explorer_faces_and_trajectory_plot():
    fig = plot_trajectory("saddle", "on the ridge", "sgd", 0.1, steps=40)
    assert "saddle" in fig.axes[0].get_title()
    plt.close(fig)
    box = trap_explorer(
        surfaces=("saddle",), optimizers=("sgd",), lrs=(0.05, 0.1), steps=20, live=False
    )
    stack = next(c for c in box.children if isinstance(c, widgets.Stack))
    images = _images(stack)
    assert len(images) == 4 and len(set(images)) == 4
    live = trap_explorer(surfaces=("saddle",), optimizers=("sgd",), steps=20, live=True)
    slider = next(c for c in live.children if isinstance(c, widgets.FloatSlider))
    image = next(c for c in live.children if isinstance(c, widgets.Image))
    before = bytes(image.value)
    slider.value = 0.25
    assert bytes(image.value) != before


@pytest.mark.parametrize(
    "call",
    [
        lambda: plot_trajectory("bowl", "A", "sgd", 0.1),
        lambda: plot_trajectory("saddle", "nowhere", "sgd", 0.1),
        lambda: plot_trajectory("saddle", "on the ridge", "lbfgs", 0.1),
        lambda: plot_trajectory("saddle", "on the ridge", "sgd", -0.1),
        lambda: trap_explorer(surfaces=("bowl",), live=False),
        lambda: trap_explorer(steps=0, live=False),
    ],
)
def test_trap_widget_bad_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def _two_mlps(digits_mlp):
    """A copy of the shared trained MLP and an untrained one of the same architecture."""
    return copy.deepcopy(digits_mlp), models.mlp(64, 10, hidden=32, seed=1)


def _blend(start, end, t):
    """A copy of ``start`` whose parameters are (1 - t) * start + t * end."""
    blend = copy.deepcopy(start)
    with torch.no_grad():
        for p, q in zip(blend.parameters(), end.parameters(), strict=True):
            p.mul_(1 - t).add_(t * q)
    return blend


def test_segment_loss_ends_are_the_models_and_points_between_interpolate_weights(
    digits, digits_mlp
):
    start, end = _two_mlps(digits_mlp)
    x, y = digits.x_train[:300], digits.y_train[:300]
    ts = [-0.5, 0.0, 0.5, 1.0, 1.5]
    losses = landscape.segment_loss(start, end, x, y, ts)
    with torch.no_grad():
        expected = [
            torch.nn.functional.cross_entropy(_blend(start, end, t)(x), y).item() for t in ts
        ]
        own = [torch.nn.functional.cross_entropy(m(x), y).item() for m in (start, end)]
    assert losses.shape == (5,) and losses.dtype == torch.float64
    assert torch.allclose(losses, torch.tensor(expected, dtype=torch.float64), atol=1e-5)
    assert abs(losses[1] - own[0]) < 1e-5 and abs(losses[3] - own[1]) < 1e-5
    assert abs(losses[2] - (own[0] + own[1]) / 2) > 0.05  # the weights are averaged, not the losses


def test_segment_loss_leaves_both_models_alone(digits, digits_mlp):
    start, end = _two_mlps(digits_mlp)
    start.train()
    end.eval()
    before = [p.detach().clone() for p in (*start.parameters(), *end.parameters())]
    landscape.segment_loss(
        start, end, digits.x_train[:200], digits.y_train[:200], torch.linspace(0, 1, 5)
    )
    assert start.training and not end.training
    assert all(p.grad is None for p in (*start.parameters(), *end.parameters()))
    assert all(
        torch.equal(a, b.detach())
        for a, b in zip(before, (*start.parameters(), *end.parameters()), strict=True)
    )


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda s, e, x, y: landscape.segment_loss(
                s, models.mlp(64, 10, hidden=16), x, y, [0.0]
            ),
            "end",
        ),
        (lambda s, e, x, y: landscape.segment_loss(s, e, x, y, []), "ts"),
        (lambda s, e, x, y: landscape.segment_loss(s, e, x, y, [[0.0, 1.0]]), "ts"),
        (lambda s, e, x, y: landscape.segment_loss(s, e, x, y, [0.0, float("nan")]), "ts"),
        (lambda s, e, x, y: landscape.segment_loss(s, e, x, y[:-1], [0.0]), "y"),
        (lambda s, e, x, y: landscape.segment_loss("model", e, x, y, [0.0]), "start"),
    ],
)
def test_segment_loss_rejects_bad_arguments(digits, digits_mlp, make, message):
    start, end = _two_mlps(digits_mlp)
    with pytest.raises(ValueError, match=message):
        make(start, end, digits.x_train[:20], digits.y_train[:20])
