"""Chapter 7 additions to gdsec.landscape: many starts at once, critical points, full Hessian, shortcuts."""

import ipywidgets as widgets
import matplotlib.pyplot as plt
import pytest
import torch

from gdsec import data, landscape, models
from gdsec.optim import minimize
from gdsec.widgets.landscape import plot_trajectory, trap_explorer


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
    adam_end = landscape.descend_many(surf.fn, torch.tensor([[1.0, 1.0]]), optimizer="adam", lr=0.05, steps=400)
    assert adam_end.abs().max() < 0.05


def test_step_size_decides_which_himmelblau_minima_are_reachable():
    surf = landscape.surface("himmelblau")
    axis = torch.linspace(-4.5, 4.5, 15, dtype=torch.float64)
    starts = torch.cartesian_prod(axis, axis)
    small = landscape.nearest_minimum(surf, landscape.descend_many(surf.fn, starts, lr=0.05, steps=300))
    large = landscape.nearest_minimum(surf, landscape.descend_many(surf.fn, starts, lr=0.2, steps=300))
    assert set(small.tolist()) == {0, 1, 2, 3}
    assert 2 not in set(large.tolist()) and 3 not in set(large.tolist())


def test_noise_escapes_saddle_plain_descent_does_not():
    surf = landscape.surface("saddle")
    at_saddle = torch.zeros(50, 2, dtype=torch.float64)
    plain = landscape.nearest_minimum(surf, landscape.descend_many(surf.fn, at_saddle, lr=0.1, steps=100), tol=0.1)
    noisy = landscape.nearest_minimum(
        surf, landscape.descend_many(surf.fn, at_saddle, lr=0.1, steps=100, grad_noise=0.05, seed=1), tol=0.1
    )
    assert (plain == -1).all()
    assert (noisy >= 0).float().mean() > 0.9


def test_critical_point_kind_and_eigenvalues():
    saddle = landscape.surface("saddle").fn
    assert landscape.critical_point_kind(saddle, (0.0, 0.0)) == "saddle"
    assert landscape.critical_point_kind(saddle, (1.0, 0.0)) == "minimum"
    assert landscape.critical_point_kind(lambda w: -(w**2).sum(), (0.0, 0.0)) == "maximum"
    assert landscape.critical_point_kind(lambda w: w[0] ** 2 + 0 * w[1], (0.0, 0.0)) == "degenerate"
    assert torch.allclose(landscape.hessian_eigenvalues(saddle, (0.0, 0.0)), torch.tensor([-1.0, 1.0], dtype=torch.float64))


def test_first_exit():
    path = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.6, 0.0]], dtype=torch.float64)
    assert landscape.first_exit(path, (0.0, 0.0), 0.5) == 2
    assert landscape.first_exit(path, (0.0, 0.0), 5.0) is None


def test_power_iteration_sharpness_matches_full_hessian_on_tiny_mlp():
    split = data.load_digits()
    model = models.mlp(64, 3, hidden=4, seed=0).double()
    x, y = split.x_train[:60].double(), split.y_train[:60] % 3
    exact = torch.linalg.eigvalsh(landscape.full_hessian(model, x, y))
    top = exact[exact.abs().argmax()].item()
    assert abs(landscape.sharpness(model, x, y, iters=500) - top) < 1e-4 * abs(top)
    hessian = landscape.full_hessian(model, x, y)
    assert torch.allclose(hessian, hessian.T, atol=1e-10)
    assert all(p.grad is None for p in model.parameters())


def test_plant_shortcut_stamps_codes_and_shuffle_breaks_them():
    split = data.load_digits()
    x, y = split.x_train[:40], split.y_train[:40]
    planted = landscape.plant_shortcut(x, y, pixels=6, seed=0)
    assert planted.shape == x.shape and planted.min() >= 0 and planted.max() <= 1
    assert torch.equal(x, split.x_train[:40])  # input untouched
    changed = (planted != x).reshape(40, -1)
    assert changed[:, 9:55].sum() <= changed.sum()  # only the border can change
    same_class = (y == y[0]).nonzero().squeeze(1)
    codes = planted.reshape(40, -1)[same_class] == 1.0
    assert codes.all(dim=0).sum() >= 6  # the class code is shared by all its rows
    shuffled = landscape.shuffle_border(planted, seed=0)
    inner = torch.zeros(8, 8, dtype=torch.bool)
    inner[1:7, 1:7] = True
    assert torch.equal(shuffled[:, 0][:, inner], planted[:, 0][:, inner])


@pytest.mark.parametrize(
    "call",
    [
        lambda: landscape.descend_many(landscape.surface("bowl").fn, torch.zeros(3), lr=0.1, steps=5),
        lambda: landscape.descend_many(landscape.surface("bowl").fn, torch.zeros(2, 2), lr=-0.1, steps=5),
        lambda: landscape.descend_many(landscape.surface("bowl").fn, torch.zeros(2, 2), lr=0.1, steps=0),
        lambda: landscape.descend_many(landscape.surface("bowl").fn, torch.full((1, 2), float("nan")), lr=0.1, steps=5),
        lambda: landscape.descend_many(landscape.surface("bowl").fn, torch.zeros(1, 2), optimizer="lbfgs", lr=0.1, steps=5),
        lambda: landscape.nearest_minimum(landscape.surface("bowl"), torch.zeros(3), tol=0.1),
        lambda: landscape.nearest_minimum(landscape.surface("bowl"), torch.zeros(1, 2), tol=0.0),
        lambda: landscape.critical_point_kind(landscape.surface("bowl").fn, (float("nan"), 0.0)),
        lambda: landscape.hessian_eigenvalues(landscape.surface("bowl").fn, ()),
        lambda: landscape.first_exit(torch.zeros(3), (0.0,), 1.0),
        lambda: landscape.first_exit(torch.zeros(3, 2), (0.0, 0.0), 0.0),
        lambda: landscape.full_hessian("not a model", torch.zeros(1, 64), torch.zeros(1, dtype=torch.long)),
        lambda: landscape.full_hessian(models.mlp(hidden=128, seed=0), torch.zeros(1, 1, 8, 8), torch.zeros(1, dtype=torch.long)),
        lambda: landscape.full_hessian(models.mlp(hidden=2, seed=0), torch.zeros(1, 1, 8, 8), torch.zeros(2, dtype=torch.long)),
        lambda: landscape.plant_shortcut(torch.zeros(4, 64), torch.zeros(4, dtype=torch.long)),
        lambda: landscape.plant_shortcut(torch.zeros(4, 1, 8, 8), torch.full((4,), 10)),
        lambda: landscape.plant_shortcut(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), pixels=0),
        lambda: landscape.plant_shortcut(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), pixels=29),
        lambda: landscape.shuffle_border(torch.zeros(4, 1, 2, 2)),
        lambda: landscape.shuffle_border(torch.zeros(4, 1, 8, 8), seed=-1),
    ],
)
def test_bad_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def _images(widget):
    if isinstance(widget, widgets.Image):
        return [bytes(widget.value)]
    return [image for child in widget.children for image in _images(child)]


def test_trap_explorer_faces_and_trajectory_plot():
    fig = plot_trajectory("saddle", "on the ridge", "sgd", 0.1, steps=40)
    assert "saddle" in fig.axes[0].get_title()
    plt.close(fig)
    box = trap_explorer(surfaces=("saddle",), optimizers=("sgd",), lrs=(0.05, 0.1), steps=20, live=False)
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
