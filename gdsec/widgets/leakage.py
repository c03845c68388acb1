"""Explorer for chapter 9: how gradient noise and the client's batch size change what DLG recovers."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from ipywidgets import VBox
from matplotlib.figure import Figure
from torch import nn

from gdsec.leakage import (
    add_gradient_noise,
    client_gradients,
    dlg,
    match_reconstructions,
    reconstruction_quality,
)
from gdsec.validation import check_int, check_labels, check_model, check_number, check_unit_tensor
from gdsec.widgets.core import explorer

__all__ = ["leakage_explorer", "plot_reconstruction"]


def plot_reconstruction(
    x: torch.Tensor,
    x_rec: torch.Tensor,
    errors: torch.Tensor,
    *,
    columns: int | None = None,
    title: str = "",
) -> Figure:
    """Originals in the top row, their reconstructions below, each captioned with its PSNR.

    ``errors`` are the per-image mean squared errors (pixels in [0, 1]); the caption shows
    10 log10(1 / MSE) in dB (20 dB is an MSE of 0.01).
    Taught in chapter 9.
    """
    n = x.shape[0]
    x, x_rec = x.detach().numpy(), x_rec.detach().numpy()
    columns = max(n, columns or n)
    fig, axes = plt.subplots(2, columns, figsize=(1.25 * columns + 0.6, 2.9), squeeze=False)
    for j in range(columns):
        for row in range(2):
            axes[row, j].axis("off")
        if j < n:
            axes[0, j].imshow(x[j, 0], cmap="gray_r", vmin=0, vmax=1)
            axes[1, j].imshow(x_rec[j, 0], cmap="gray_r", vmin=0, vmax=1)
            mse = float(errors[j])
            db = math.inf if mse <= 0 else 10 * math.log10(1 / mse)
            axes[1, j].set_title(f"{db:.0f} dB", fontsize=8)
    axes[0, 0].text(
        -0.3, 0.5, "private", rotation=90, va="center", ha="right", transform=axes[0, 0].transAxes
    )
    axes[1, 0].text(
        -0.3, 0.5, "rebuilt", rotation=90, va="center", ha="right", transform=axes[1, 0].transAxes
    )
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def leakage_explorer(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    noise_levels: Sequence[float] = (0.0, 0.003, 0.01, 0.03),
    batch_sizes: Sequence[int] = (1, 2, 4),
    n_classes: int = 10,
    steps: int = 100,
    live: bool | None = None,
) -> VBox:
    """Gradient-noise level x client batch size -> the DLG reconstruction of the client's batch.

    Each view computes the client's gradient on the first ``batch`` rows of (x, y), adds Gaussian
    noise of the chosen standard deviation, runs :func:`gdsec.leakage.dlg` and shows the result
    with its PSNR and SSIM (:func:`gdsec.leakage.reconstruction_quality`).
    Taught in chapter 9.
    """
    check_model("model", model)
    check_unit_tensor("x", x, min_dim=2)
    check_labels("y", y, n=x.shape[0], n_classes=n_classes)
    check_int("steps", steps, low=1, high=1000)
    noise_levels = [check_number("noise_levels", s, low=0.0) for s in noise_levels]
    batch_sizes = [check_int("batch_sizes", b, low=1, high=min(8, x.shape[0])) for b in batch_sizes]
    if not noise_levels or not batch_sizes:
        raise ValueError("noise_levels and batch_sizes must each list at least one value")
    widest = max(batch_sizes)

    def render(noise: float, batch: int) -> Figure:
        xb, yb = x[:batch], y[:batch]
        grads = add_gradient_noise(client_gradients(model, xb, yb), noise, seed=0)
        x_rec, _ = dlg(model, grads, tuple(xb.shape), n_classes=n_classes, steps=steps)
        quality = reconstruction_quality(x_rec, xb)
        title = (
            f"noise σ = {noise:.3g}, batch of {batch}: median PSNR {quality.psnr.median().item():.0f} dB, "
            f"mean SSIM {quality.ssim.mean().item():.2f}"
        )
        return plot_reconstruction(
            xb, match_reconstructions(x_rec, xb), quality.mse, columns=widest, title=title
        )

    return explorer(
        render,
        {"noise": noise_levels, "batch": batch_sizes},
        live=live,
        live_ranges={"noise": (0.0, 0.05, 0.001)},
        descriptions={"noise": "gradient noise σ", "batch": "client batch size"},
        title="What DLG rebuilds from one shared gradient",
    )
