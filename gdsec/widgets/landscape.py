"""Explorer for chapter 7: a surface with traps, a start point, an optimizer and a learning rate."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from ipywidgets import VBox
from matplotlib.figure import Figure

from gdsec.landscape import critical_point_kind, nearest_minimum, surface
from gdsec.optim import OPTIMIZERS, minimize
from gdsec.plotting import PALETTE, plot_surface
from gdsec.validation import check_choice, check_int, check_number
from gdsec.widgets.core import explorer

__all__ = ["TRAP_STARTS", "plot_trajectory", "trap_explorer"]

#: Named start points per surface: near a saddle's stable line, or on a ridge between basins.
TRAP_STARTS: dict[str, dict[str, tuple[float, float]]] = {
    "saddle": {"on the ridge": (0.0, 1.1), "just off it": (0.02, 1.1)},
    "himmelblau": {"centre": (0.0, 0.0), "south-west": (-0.6, -1.2)},
}

#: Learning-rate multipliers per optimizer so that one slider suits all of them.
LR_SCALE = {"sgd": 1.0, "momentum": 0.3, "rmsprop": 0.3, "adam": 1.0}


def plot_trajectory(
    surface_name: str,
    start: str,
    optimizer: str,
    lr: float,
    *,
    steps: int = 150,
    noise: float = 0.0,
) -> Figure:
    """Two panels: the optimizer's path on the surface, and the loss and gradient norm per step.

    Taught in chapter 7.
    """
    check_choice("surface_name", surface_name, tuple(TRAP_STARTS))
    check_choice("start", start, tuple(TRAP_STARTS[surface_name]))
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_number("lr", lr, low=0.0, low_open=True)
    check_int("steps", steps, low=1, high=5000)
    surf = surface(surface_name)
    step_size = lr * LR_SCALE[optimizer]
    path = minimize(
        surf.fn,
        TRAP_STARTS[surface_name][start],
        optimizer=optimizer,
        lr=step_size,
        steps=steps,
        grad_noise=noise,
    )
    probe = path.T.clone().requires_grad_(True)
    values = surf.fn(probe)
    (grad,) = torch.autograd.grad(values.sum(), probe)
    losses, grad_norms = values.detach().numpy(), grad.norm(dim=0).numpy()
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(8.6, 3.5), gridspec_kw={"width_ratios": [1.1, 1]}, layout="none"
    )
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.14, top=0.9, wspace=0.25)
    plot_surface(left, surf, {f"{optimizer}, lr {step_size:.3g}": path}, levels=20)
    end = path[-1]
    if len(path) < steps + 1:
        verdict = "diverged"
    else:
        which = int(nearest_minimum(surf, end[None], tol=0.05)[0])
        verdict = (
            f"minimum #{which + 1}" if which >= 0 else critical_point_kind(surf.fn, end, tol=1e-3)
        )
    left.set_title(f"ends at ({end[0]:.2f}, {end[1]:.2f}): {verdict}", fontsize=10)
    lowest = min(surf.fn(torch.tensor(m, dtype=torch.float64)).item() for m in surf.minima)
    gap = np.maximum(np.asarray(losses) - lowest, 1e-16)
    right.plot(np.log10(gap), color=PALETTE["blue"], label="loss above the best minimum")
    right.plot(
        np.log10(np.maximum(grad_norms, 1e-16)), color=PALETTE["vermillion"], label="gradient norm"
    )
    right.set_xlabel("step")
    right.set_ylabel("log$_{10}$ of the value")
    right.set_xlim(0, steps)
    right.legend(loc="lower left", fontsize=8)
    right.set_title("a tiny gradient is not proof of a minimum", fontsize=10)
    return fig


def trap_explorer(
    *,
    surfaces: Sequence[str] = ("saddle", "himmelblau"),
    optimizers: Sequence[str] = ("sgd", "adam"),
    lrs: Sequence[float] = (0.05, 0.15),
    steps: int = 150,
    live: bool | None = None,
) -> VBox:
    """Surface x start point x optimizer x learning rate -> trajectory (16 precomputed views by default).

    Taught in chapter 7.
    """
    check_int("steps", steps, low=1, high=5000)
    for name in surfaces:
        check_choice("surfaces", name, tuple(TRAP_STARTS))
    labels = ["A", "B"]

    def render(surface_name: str, start: str, optimizer: str, lr: float) -> Figure:
        named = list(TRAP_STARTS[surface_name])[labels.index(start)]
        return plot_trajectory(surface_name, named, optimizer, lr, steps=steps)

    return explorer(
        render,
        {
            "surface_name": list(surfaces),
            "start": labels,
            "optimizer": list(optimizers),
            "lr": list(lrs),
        },
        live=live,
        live_ranges={"lr": (0.005, 0.3, 0.005)},
        descriptions={
            "surface_name": "surface",
            "start": "start point",
            "optimizer": "optimizer",
            "lr": "learning rate",
        },
        title="Where does descent end? Surface, start, optimizer and step size",
    )
