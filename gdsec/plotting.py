"""One shared plot style for the course: Okabe-Ito colour-blind-safe palette, labelled axes, and
Markdown tables for results."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gdsec.landscape import Surface, evaluate_grid

__all__ = [
    "PALETTE",
    "apply_style",
    "figure_png",
    "markdown_table",
    "plot_digits",
    "plot_surface",
    "STYLE",
]

#: Okabe & Ito (2008) palette, safe for the common forms of colour blindness.
PALETTE = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "green": "#009E73",
    "vermillion": "#D55E00",
    "sky": "#56B4E9",
    "purple": "#CC79A7",
    "yellow": "#F0E442",
    "black": "#000000",
}
CYCLE = [
    PALETTE[k]
    for k in ("blue", "orange", "green", "vermillion", "sky", "purple", "yellow", "black")
]

STYLE = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "axes.prop_cycle": matplotlib.cycler(color=CYCLE),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.frameon": False,
    "image.cmap": "gray_r",
    "figure.constrained_layout.use": True,
}


def apply_style() -> None:
    """Apply the course style to matplotlib (call once at the top of a notebook).

    Used in chapters 1, 2, 3, 4, 5, 6, 7, 8, 9 and 10.
    """
    plt.rcParams.update(STYLE)


def figure_png(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes and close it (for Image widgets and precomputed views).

    Used in chapters 1, 2, 3, 4, 5, 6, 7, 8, 9 and 10.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def plot_digits(
    images: torch.Tensor | np.ndarray,
    titles: Sequence[str] | None = None,
    *,
    ncols: int = 8,
    size: float = 1.1,
    vmin: float = 0.0,
    vmax: float = 1.0,
    cmap: str = "gray_r",
) -> Figure:
    """A grid of 8x8 images (N, 1, 8, 8) or (N, 8, 8) with optional titles; returns the figure.

    Used in chapters 1, 3, 5, 7 and 8.
    """
    array = np.asarray(images.detach().cpu() if isinstance(images, torch.Tensor) else images)
    if array.ndim == 4:
        array = array[:, 0]
    if array.ndim != 3:
        raise ValueError(f"images must have shape (N, 1, H, W) or (N, H, W), got {array.shape}")
    if titles is not None and len(titles) != len(array):
        raise ValueError(f"titles must have one entry per image ({len(array)}), got {len(titles)}")
    n = len(array)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(size * ncols, size * nrows + 0.2 * (titles is not None)),
        squeeze=False,
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(array[i], cmap=cmap, vmin=vmin, vmax=vmax)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    return fig


def plot_surface(
    ax: Axes,
    surf: Surface,
    paths: dict[str, torch.Tensor | np.ndarray] | None = None,
    *,
    levels: int = 30,
    log: bool = True,
) -> Axes:
    """Contour plot of a 2-D ``Surface`` with optional optimizer paths (label -> (k, 2) points).

    Used in chapters 1 and 2.
    """
    grid_x, grid_y, z = evaluate_grid(surf.fn, surf.xlim, surf.ylim)
    shown = np.log1p(z - z.min()) if log else z
    ax.contourf(grid_x, grid_y, shown, levels=levels, cmap="Greys", alpha=0.55)
    ax.contour(grid_x, grid_y, shown, levels=levels, colors="k", linewidths=0.3, alpha=0.4)
    for mx, my in surf.minima:
        ax.plot(
            mx,
            my,
            marker="*",
            color=PALETTE["yellow"],
            markeredgecolor="k",
            markersize=12,
            zorder=5,
        )
    for i, (label, path) in enumerate((paths or {}).items()):
        points = np.asarray(path)
        colour = CYCLE[i % len(CYCLE)]
        ax.plot(
            points[:, 0],
            points[:, 1],
            "-o",
            color=colour,
            markersize=2.5,
            linewidth=1.3,
            label=label,
        )
        ax.plot(points[0, 0], points[0, 1], "s", color=colour, markersize=6)
    ax.set_xlim(*surf.xlim)
    ax.set_ylim(*surf.ylim)
    ax.set_xlabel("$w_1$")
    ax.set_ylabel("$w_2$")
    ax.grid(False)
    if paths:
        ax.legend(loc="upper right", fontsize=8)
    return ax


def _cell(value: object) -> str:
    """One table cell: the value as text, on one line, with ``|`` escaped."""
    return " ".join(str(value).split()).replace("|", "\\|")


def markdown_table(header: Sequence[object], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown (GitHub) table: one ``header`` row, a rule, then ``rows``, each as long as ``header``.

    Cells are ``str(value)``, on one line, with ``|`` escaped; format numbers before passing them.
    Show it in a notebook with ``IPython.display.Markdown``.

    Used in chapters 3 and 4.
    """
    if isinstance(header, str) or not isinstance(header, Sequence) or len(header) == 0:
        raise ValueError("header must be a non-empty sequence of column names")
    if isinstance(rows, str) or not isinstance(rows, Sequence):
        raise ValueError("rows must be a sequence of rows")
    for i, row in enumerate(rows):
        if isinstance(row, str) or not isinstance(row, Sequence) or len(row) != len(header):
            raise ValueError(
                f"rows[{i}] must be a sequence of {len(header)} cells (one per header column), got {row!r}"
            )
    lines = ["| " + " | ".join(_cell(c) for c in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
