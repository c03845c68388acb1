"""Explorers for Part 1: the learning rate on a loss surface (ch. 1), optimizers and batch sizes (ch. 2)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from ipywidgets import VBox
from matplotlib.figure import Figure

from gdsec.data import Split
from gdsec.env import is_live_frontend
from gdsec.landscape import quadratic, surface
from gdsec.models import logistic_regression
from gdsec.optim import OPTIMIZERS, minimize
from gdsec.plotting import PALETTE, plot_surface
from gdsec.train import accuracy, train
from gdsec.validation import check_int, check_number
from gdsec.widgets.core import explorer

__all__ = ["BASE_LR", "learning_rate_explorer", "optimizer_explorer", "plot_descent", "plot_training_run"]

#: Learning rates that work for logistic regression on digits, per optimizer (scaled by the explorer).
BASE_LR = {"sgd": 0.5, "momentum": 0.1, "rmsprop": 0.01, "adam": 0.01}


def plot_descent(lr: float, *, surface_name: str = "bowl", steps: int = 30, optimizer: str = "sgd") -> Figure:
    """Two panels: the descent path on a 2-D surface, and the loss at every step (log scale).

    Taught in chapter 1.
    """
    surf = surface(surface_name)
    path = minimize(surf.fn, surf.start, optimizer=optimizer, lr=lr, steps=steps)
    losses = np.array([surf.fn(p).item() for p in path])
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.4, 3.4), gridspec_kw={"width_ratios": [1.1, 1]})
    plot_surface(left, surf, {f"lr = {lr:.3g}": path})
    left.set_title(f"{optimizer} on the {surface_name}: {len(path) - 1} steps")
    right.semilogy(np.arange(len(losses)), losses, "-o", color=PALETTE["blue"], markersize=3)
    diverged = len(path) < steps + 1 or losses[-1] > losses[0]
    right.set_title("diverged" if diverged else f"final loss {losses[-1]:.2g}")
    right.set_xlabel("step")
    right.set_ylabel("loss (log scale)")
    right.set_xlim(0, steps)
    return fig


def learning_rate_explorer(
    lrs: Sequence[float] = (0.01, 0.05, 0.1, 0.15, 0.19, 0.21),
    *,
    surface_name: str = "bowl",
    steps: int = 30,
    curvatures: Sequence[float] | None = None,
    live: bool | None = None,
) -> VBox:
    """Learning-rate slider over a loss surface: the path and the loss curve for each rate.

    With ``curvatures`` (bowl only) a second control sets the steep curvature ``c`` of the bowl
    ``1/2 (w_1^2 + c w_2^2)``, so the same learning rate can be seen below, at and above ``2/c``;
    each view's title gives ``2/c`` and the best constant step ``2/(1 + c)``.
    Taught in chapter 1.
    """
    check_int("steps", steps, low=1, high=1000)
    if curvatures is None:

        def render(lr: float) -> Figure:
            return plot_descent(lr, surface_name=surface_name, steps=steps)

        return explorer(
            render,
            {"lr": list(lrs)},
            live=live,
            live_ranges={"lr": (0.001, 0.25, 0.001)},
            descriptions={"lr": "learning rate"},
            title="Gradient descent with a learning rate of your choice",
        )
    if surface_name != "bowl":
        raise ValueError(f"curvatures works on the bowl only; got surface_name={surface_name!r}")
    values = [check_number("curvatures", c, low=0.0, low_open=True, high=100.0) for c in curvatures]
    if not values:
        raise ValueError("curvatures must hold at least one steep curvature, got an empty sequence")
    bowl = surface("bowl")

    def render_bowl(lr: float, curvature: float) -> Figure:
        surf = bowl._replace(fn=quadratic((1.0, curvature)))
        path = minimize(surf.fn, surf.start, lr=lr, steps=steps)
        losses = np.array([surf.fn(p).item() for p in path])
        fig, (left, right) = plt.subplots(1, 2, figsize=(8.4, 3.4), gridspec_kw={"width_ratios": [1.1, 1]})
        plot_surface(left, surf, {f"lr = {lr:.3g}": path})
        left.set_title(f"$L$ = {curvature:.3g}: $2/L$ = {2 / curvature:.3g}, $2/(\\mu+L)$ = {2 / (1 + curvature):.3g}",
                       fontsize=9)
        right.plot(np.arange(len(losses)), losses, "-o", color=PALETTE["blue"], markersize=3)
        wide = losses.max() > 10 * max(losses.min(), 1e-300)  # a log axis only when the loss spans a decade
        right.set_yscale("log" if wide else "linear")
        diverged = len(path) < steps + 1 or losses[-1] > losses[0]
        factor = max(abs(1 - lr), abs(1 - lr * curvature))
        right.set_title(f"{'diverged' if diverged else f'final loss {losses[-1]:.2g}'}; factor per step {factor:.2f}",
                        fontsize=9)
        right.set_xlabel("step")
        right.set_ylabel("loss (log scale)" if wide else "loss")
        right.set_xlim(0, steps)
        fig.subplots_adjust(wspace=0.35)
        return fig

    return explorer(
        render_bowl,
        {"lr": list(lrs), "curvature": values},
        live=live,
        live_ranges={"lr": (0.001, 0.5, 0.001), "curvature": (1.0, 40.0, 0.5)},
        descriptions={"lr": "learning rate", "curvature": "steep curvature L"},
        title="Gradient descent on a bowl: learning rate against curvature",
    )


def plot_training_run(split: Split, optimizer: str, batch_size: int | None, lr: float, *, epochs: int = 8) -> Figure:
    """Train logistic regression on ``split`` and plot its loss per epoch and test accuracy.

    Taught in chapter 2.
    """
    model = logistic_regression(seed=0)
    history = train(
        model, split.x_train, split.y_train, optimizer=optimizer, lr=lr, epochs=epochs,
        batch_size=batch_size, seed=0, progress=False,
    )
    steps_per_epoch = int(np.ceil(len(split.x_train) / (batch_size or len(split.x_train))))
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    ax.plot(np.arange(1, epochs + 1), history.loss, "-o", color=PALETTE["vermillion"], markersize=4)
    ax.set_ylim(0, 2.4)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (cross-entropy)")
    batch = "full batch" if batch_size is None else f"batch {batch_size}"
    test_acc = accuracy(model, split.x_test, split.y_test)
    ax.set_title(f"{optimizer}, {batch}, lr {lr:.3g}: {steps_per_epoch} steps/epoch, test accuracy {test_acc:.1%}")
    return fig


def optimizer_explorer(
    split: Split,
    *,
    optimizers: Sequence[str] = OPTIMIZERS,
    batch_sizes: Sequence[int | None] = (32, 256, None),
    epochs: int = 8,
    live: bool | None = None,
) -> VBox:
    """Optimizer x batch size (x learning-rate scale, live) explorer on logistic regression for digits.

    Taught in chapter 2.
    """
    check_int("epochs", epochs, low=1, high=200)
    labels = {("full" if b is None else str(b)): b for b in batch_sizes}

    def render(optimizer: str, batch: str, lr_scale: float = 1.0) -> Figure:
        with torch.random.fork_rng(devices=[]):
            return plot_training_run(split, optimizer, labels[batch], BASE_LR[optimizer] * lr_scale, epochs=epochs)

    live = is_live_frontend() if live is None else live
    grid: dict[str, list] = {"optimizer": list(optimizers), "batch": list(labels)}
    if live:
        grid["lr_scale"] = [1.0]
    return explorer(
        render,
        grid,
        live=live,
        live_ranges={"lr_scale": (0.1, 5.0, 0.1)} if "lr_scale" in grid else None,
        descriptions={"optimizer": "optimizer", "batch": "batch size", "lr_scale": "learning rate × base"},
        title="Optimizer and batch size on logistic regression for digits",
    )

