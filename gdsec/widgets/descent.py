"""Explorers for Part 1: the learning rate on a loss surface (ch. 1), momentum's (lr, beta) on a bowl (ch. 2)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from ipywidgets import VBox
from matplotlib.figure import Figure

from gdsec.landscape import Surface, quadratic, surface
from gdsec.optim import minimize, momentum_rate
from gdsec.plotting import PALETTE, plot_surface
from gdsec.validation import check_int, check_number
from gdsec.widgets.core import explorer

__all__ = ["learning_rate_explorer", "optimizer_explorer", "plot_descent"]


def plot_descent(
    lr: float, *, surface_name: str = "bowl", steps: int = 30, optimizer: str = "sgd"
) -> Figure:
    """Two panels: the descent path on a 2-D surface, and the loss at every step (log scale).

    Taught in chapter 1.
    """
    surf = surface(surface_name)
    path = minimize(surf.fn, surf.start, optimizer=optimizer, lr=lr, steps=steps)
    losses = np.array([surf.fn(p).item() for p in path])
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(8.4, 3.4), gridspec_kw={"width_ratios": [1.1, 1]}
    )
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
        fig, (left, right) = plt.subplots(
            1, 2, figsize=(8.4, 3.4), gridspec_kw={"width_ratios": [1.1, 1]}
        )
        plot_surface(left, surf, {f"lr = {lr:.3g}": path})
        left.set_title(
            f"$L$ = {curvature:.3g}: $2/L$ = {2 / curvature:.3g}, $2/(\\mu+L)$ = {2 / (1 + curvature):.3g}",
            fontsize=9,
        )
        right.plot(np.arange(len(losses)), losses, "-o", color=PALETTE["blue"], markersize=3)
        wide = losses.max() > 10 * max(
            losses.min(), 1e-300
        )  # a log axis only when the loss spans a decade
        right.set_yscale("log" if wide else "linear")
        diverged = len(path) < steps + 1 or losses[-1] > losses[0]
        factor = max(abs(1 - lr), abs(1 - lr * curvature))
        right.set_title(
            f"{'diverged' if diverged else f'final loss {losses[-1]:.2g}'}; factor per step {factor:.2f}",
            fontsize=9,
        )
        right.set_xlabel("step")
        right.set_ylabel("loss (log scale)" if wide else "loss")
        right.set_xlim(0, steps)
        return fig

    return explorer(
        render_bowl,
        {"lr": list(lrs), "curvature": values},
        live=live,
        live_ranges={"lr": (0.001, 0.5, 0.001), "curvature": (1.0, 40.0, 0.5)},
        descriptions={"lr": "learning rate", "curvature": "steep curvature L"},
        title="Gradient descent on a bowl: learning rate against curvature",
    )


def _momentum_figure(
    lr: float,
    beta: float,
    kappa: float,
    steps: int,
    rates: np.ndarray,
    lrs: np.ndarray,
    betas: np.ndarray,
) -> Figure:
    """Three panels for heavy-ball momentum at (lr, beta) on the bowl diag(1, kappa): path, errors, rate map."""
    bowl = Surface(
        f"kappa = {kappa:g} bowl",
        quadratic((1.0, kappa)),
        (-1.5, 1.5),
        (-1.5, 1.5),
        ((0.0, 0.0),),
        (1.0, 1.0),
    )
    path = minimize(
        bowl.fn, bowl.start, optimizer="momentum", lr=lr, beta=beta, steps=steps
    ).numpy()
    rate = max(momentum_rate(lr, beta, 1.0), momentum_rate(lr, beta, kappa))
    fig, (left, middle, right) = plt.subplots(
        1,
        3,
        figsize=(10.0, 3.1),
        layout="none",
        gridspec_kw={"width_ratios": [1, 1.1, 1.1], "wspace": 0.45},
    )
    plot_surface(left, bowl, {"path": path}, levels=12).get_legend().remove()
    diverged = len(path) < steps + 1
    left.set_title(
        f"η {lr:.3g}, β {beta:.3g}: {len(path) - 1} steps" + (" (diverged)" if diverged else "")
    )
    for axis, (label, colour) in enumerate(
        (("flat direction, λ = 1", "blue"), (f"steep direction, λ = {kappa:g}", "vermillion"))
    ):
        middle.semilogy(np.abs(path[:, axis]) + 1e-300, color=PALETTE[colour], label=label)
    middle.set_ylim(1e-12, 1e3)
    middle.set_yticks([1e-12, 1e-8, 1e-4, 1.0], ["1e-12", "1e-8", "1e-4", "1"])
    middle.minorticks_off()
    middle.set_xlim(0, steps)
    middle.set_xlabel("step")
    middle.set_ylabel("|error| per eigen-direction")
    middle.set_title(f"rate (spectral radius) {rate:.3f}")
    middle.legend(loc="lower left", fontsize=8)
    image = right.imshow(
        np.minimum(rates, 1.2),
        origin="lower",
        aspect="auto",
        cmap="viridis",
        vmin=0.6,
        vmax=1.2,
        extent=(lrs[0], lrs[-1], betas[0], betas[-1]),
        interpolation="nearest",
    )
    fig.colorbar(image, ax=right, ticks=[0.6, 0.8, 1.0, 1.2]).set_label(
        "rate (1 or more: diverges)"
    )
    for curvature in (
        1.0,
        kappa,
    ):  # critical damping: the discriminant of R vanishes, beta = (1 - sqrt(lr c))^2
        damped = (1 - np.sqrt(lrs * curvature)) ** 2
        keep = damped <= betas[-1]
        right.plot(lrs[keep], damped[keep], color="white", linestyle="--", linewidth=1)
    right.plot(
        lr, beta, marker="o", color=PALETTE["vermillion"], markeredgecolor="white", markersize=9
    )
    right.set_ylim(betas[0], betas[-1])
    right.set_xlabel("learning rate η")
    right.set_ylabel("momentum β")
    right.set_title("rate map (dashed: critical damping)")
    return fig


def optimizer_explorer(
    lrs: Sequence[float] = (0.01, 0.02, 4 / 121),
    betas: Sequence[float] = (0.0, 81 / 121, 0.9),
    *,
    kappa: float = 100.0,
    steps: int = 100,
    live: bool | None = None,
) -> VBox:
    """Distill-style (learning rate, momentum) explorer on the bowl diag(1, kappa) (Goh 2017).

    Each view shows the heavy-ball path, the error along each eigen-direction per step, and the rate
    map max over eigenvalues of the spectral radius (``gdsec.optim.momentum_rate``) with the chosen point.
    The defaults offer the optimal pair for kappa = 100, lr = 4 / (sqrt(kappa) + 1)^2 and
    beta = ((sqrt(kappa) - 1) / (sqrt(kappa) + 1))^2, and neighbours of it.
    Taught in chapter 2.
    """
    check_number("kappa", kappa, low=1.0)
    check_int("steps", steps, low=1, high=2000)
    grid_lrs = np.linspace(0.001, 4.0 / kappa, 60)
    grid_betas = np.linspace(0.0, 0.99, 60)
    rates = np.array(
        [
            [
                max(
                    momentum_rate(float(a), float(b), 1.0), momentum_rate(float(a), float(b), kappa)
                )
                for a in grid_lrs
            ]
            for b in grid_betas
        ]
    )

    def render(lr: float, beta: float) -> Figure:
        return _momentum_figure(lr, beta, kappa, steps, rates, grid_lrs, grid_betas)

    return explorer(
        render,
        {"lr": list(lrs), "beta": list(betas)},
        live=live,
        live_ranges={"lr": (0.001, 4.0 / kappa, 0.0005), "beta": (0.0, 0.99, 0.01)},
        descriptions={"lr": "learning rate", "beta": "momentum beta"},
        title=f"Heavy-ball momentum on a bowl with condition number {kappa:g}",
    )
