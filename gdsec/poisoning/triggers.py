"""Triggers that are not a patch: a blended pattern (Chen et al. 2017) and a smooth warp (WaNet).

:func:`blend` mixes every row with one fixed pattern, so the trigger touches every feature a
little; :func:`warp` moves every pixel along one fixed, smooth random flow field (Nguyen & Tran
2021), so nothing is added at all. Both return new tensors with the input's shape, dtype and device.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from gdsec.streams import random_stream
from gdsec.validation import check_int, check_number, check_seed, check_unit_tensor

__all__ = ["blend", "warp"]


def blend(x: torch.Tensor, pattern: torch.Tensor, alpha: float) -> torch.Tensor:
    """``(1 - alpha) * x + alpha * pattern``: every row of ``x`` mixed with one ``pattern`` (a row's shape or flat).

    Taught in chapter 10.
    """
    check_unit_tensor("x", x, min_dim=2)
    check_unit_tensor("pattern", pattern)
    alpha = check_number("alpha", alpha, low=0.0, high=1.0)
    if pattern.numel() != x[0].numel():
        raise ValueError(
            f"pattern must have one value per feature of a row ({x[0].numel()}), got shape {tuple(pattern.shape)}"
        )
    row = pattern.detach().to(device=x.device, dtype=x.dtype).reshape(1, *x.shape[1:])
    return ((1.0 - alpha) * x.detach() + alpha * row).clamp(0.0, 1.0)


def _images(x: torch.Tensor) -> torch.Tensor:
    """``x`` as (N, C, H, W): images as they are, flat square rows (N, s*s) as (N, 1, s, s)."""
    if x.dim() == 4:
        return x
    side = math.isqrt(x.shape[1]) if x.dim() == 2 else 0
    if x.dim() != 2 or side * side != x.shape[1] or side < 2:
        raise ValueError(
            f"x must be images (N, C, H, W) or flat square images (N, s*s), got shape {tuple(x.shape)}"
        )
    return x.reshape(x.shape[0], 1, side, side)


def _flow(height: int, width: int, grid: int, seed: int) -> torch.Tensor:
    """A smooth random flow (1, H, W, 2), largest displacement 1, upsampled from a ``grid x grid`` control grid."""
    generator = random_stream(seed, "poisoning.warp")
    control = torch.rand(1, 2, grid, grid, generator=generator) * 2 - 1
    flow = F.interpolate(control, size=(height, width), mode="bicubic", align_corners=True)
    return (flow / flow.abs().amax().clamp_min(1e-12)).permute(0, 2, 3, 1)


def warp(x: torch.Tensor, *, strength: float = 0.5, grid: int = 4, seed: int = 0) -> torch.Tensor:
    """Every image of ``x`` resampled along one fixed smooth random flow (WaNet's warping trigger).

    The flow is drawn on a ``grid x grid`` control grid (seeded), upsampled bicubically to the
    image and scaled so that no pixel moves more than ``strength`` pixels; the images are then
    resampled bilinearly with :func:`torch.nn.functional.grid_sample` (borders repeated). ``x`` is
    (N, C, H, W) or flat square images (N, s*s); the result has its shape. The same seed gives the
    same warp, which is what makes it a trigger.

    Taught in chapter 10.
    """
    check_unit_tensor("x", x, min_dim=2)
    strength = check_number("strength", strength, low=0.0)
    grid = check_int("grid", grid, low=2)
    seed = check_seed(seed)
    images = _images(x.detach())
    height, width = images.shape[-2:]
    flow = _flow(height, width, grid, seed).to(device=x.device, dtype=x.dtype)
    ys = torch.linspace(-1.0, 1.0, height, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=x.device, dtype=x.dtype)
    identity = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).unsqueeze(0)
    pixel = torch.tensor(
        [2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], device=x.device, dtype=x.dtype
    )
    sample_at = (identity + strength * flow * pixel).clamp(-1.0, 1.0)
    sample_at = sample_at.expand(images.shape[0], -1, -1, -1)
    out = F.grid_sample(
        images, sample_at, mode="bilinear", padding_mode="border", align_corners=True
    )
    return out.clamp(0.0, 1.0).reshape(x.shape)
