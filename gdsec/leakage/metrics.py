"""How good a reconstruction is, in the units the gradient-inversion literature reports: PSNR and SSIM.

PSNR is the mean squared error on a log scale against the pixel range; SSIM (Wang et al. 2004)
compares local means, contrasts and correlations, so a rebuilt digit that is shifted in brightness
scores better than one whose strokes are wrong. Both take batches of images (N, H, W) or
(N, C, H, W) with pixels in [0, ``data_range``], already aligned row by row; for a batch rebuilt in
no particular order, :func:`reconstruction_quality` matches first.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from gdsec.leakage.reconstruction import match_reconstructions
from gdsec.validation import check_int, check_number

__all__ = ["Quality", "psnr", "reconstruction_quality", "ssim"]

#: SSIM's stabilising constants are (K1 * L)^2 and (K2 * L)^2 for a pixel range L (Wang et al. 2004).
_K1, _K2 = 0.01, 0.03


def _check_pair(x_rec: object, x: object, *, images: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Both arguments as float64 tensors of one shape: a batch of rows, or of images if ``images``."""
    for name, value in (("x_rec", x_rec), ("x", x)):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {type(value).__name__}")
        if not torch.isfinite(value).all():
            raise ValueError(f"{name} must be finite (no NaN or inf)")
        if images and value.dim() not in (3, 4):
            raise ValueError(
                f"{name} must be a batch of images (N, H, W) or (N, C, H, W), got shape {tuple(value.shape)}"
            )
        if value.dim() < 2 or value.shape[0] == 0:
            raise ValueError(
                f"{name} must be a non-empty batch (N, ...), got shape {tuple(value.shape)}"
            )
    if x_rec.shape != x.shape:  # type: ignore[union-attr]
        raise ValueError(
            f"x_rec must have the shape of x {tuple(x.shape)}, got {tuple(x_rec.shape)}"
        )  # type: ignore[union-attr]
    return x_rec.detach().double(), x.detach().double()  # type: ignore[union-attr]


def psnr(x_rec: torch.Tensor, x: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio of each row, 10 log10(L^2 / MSE) in dB; ``inf`` for an exact copy.

    With pixels in [0, 1], an MSE of 0.01 is 20 dB and every factor of ten in MSE adds 10 dB.
    Taught in chapter 9.
    """
    a, b = _check_pair(x_rec, x, images=False)
    peak = check_number("data_range", data_range, low=0.0, low_open=True)
    mse = ((a - b) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(peak**2 / mse)


def ssim(
    x_rec: torch.Tensor, x: torch.Tensor, *, window: int = 7, data_range: float = 1.0
) -> torch.Tensor:
    """Structural similarity of each image (Wang et al. 2004), averaged over every ``window`` x ``window`` square.

    A uniform window slid one pixel at a time over positions where it fits, sample (n - 1)
    variances and covariance, K1 = 0.01, K2 = 0.03: what ``skimage.metrics.structural_similarity``
    computes with its defaults (window 7) and ``data_range``. Channels are averaged. 1 means identical.
    Taught in chapter 9.
    """
    a, b = _check_pair(x_rec, x, images=True)
    peak = check_number("data_range", data_range, low=0.0, low_open=True)
    side = min(a.shape[-2:])
    size = check_int("window", window, low=2, high=side)
    a, b = a.reshape(-1, 1, *a.shape[-2:]), b.reshape(-1, 1, *b.shape[-2:])

    def local_mean(z: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(z, size, stride=1)

    n = size * size
    mean_a, mean_b = local_mean(a), local_mean(b)
    var_a = (local_mean(a * a) - mean_a**2) * n / (n - 1)
    var_b = (local_mean(b * b) - mean_b**2) * n / (n - 1)
    cov = (local_mean(a * b) - mean_a * mean_b) * n / (n - 1)
    c1, c2 = (_K1 * peak) ** 2, (_K2 * peak) ** 2
    local = ((2 * mean_a * mean_b + c1) * (2 * cov + c2)) / (
        (mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)
    )
    return local.flatten(1).mean(1).reshape(x.shape[0], -1).mean(1)


class Quality(NamedTuple):
    """Per-image mean squared error, PSNR (dB) and SSIM of a matched reconstruction.

    Taught in chapter 9.
    """

    mse: torch.Tensor
    psnr: torch.Tensor
    ssim: torch.Tensor


def reconstruction_quality(
    x_rec: torch.Tensor, x: torch.Tensor, *, match: bool = True, window: int = 7
) -> Quality:
    """MSE, PSNR and SSIM of each original against its reconstruction (pixels in [0, 1]).

    With ``match=True`` (a batch rebuilt in no particular order) each original is first paired with
    one reconstruction by :func:`gdsec.leakage.match_reconstructions`; with ``match=False`` row i is
    scored against row i, as for independent clients attacked one at a time.
    Taught in chapter 9.
    """
    if not isinstance(match, bool):
        raise ValueError(f"match must be True or False, got {match!r}")
    matched = (
        match_reconstructions(x_rec, x)
        if match
        else _check_pair(x_rec, x, images=False)[0].to(x.dtype)
    )
    mse = ((matched.double() - x.double()) ** 2).flatten(1).mean(1)
    return Quality(mse, psnr(matched, x), ssim(matched, x, window=window))
