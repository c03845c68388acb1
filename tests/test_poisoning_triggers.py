"""Unit tests for gdsec.poisoning.triggers: the blended and the warping trigger."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gdsec import data, poisoning


def test_blend_is_the_convex_mix_and_keeps_its_input(digits: data.Split) -> None:
    x = digits.x_test[:6]
    before = x.clone()
    pattern = torch.linspace(0, 1, 64)
    out = poisoning.blend(x, pattern, 0.3)
    assert torch.equal(x, before)
    assert out.shape == x.shape and out.dtype == x.dtype
    expected = 0.7 * x + 0.3 * pattern.reshape(1, 1, 8, 8)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(poisoning.blend(x, pattern, 0.0), x)
    full = poisoning.blend(x, pattern.reshape(1, 8, 8), 1.0)
    assert torch.allclose(full, pattern.reshape(1, 1, 8, 8).expand_as(x))


def test_blend_on_flat_rows_matches_images(digits: data.Split) -> None:
    x = digits.x_test[:4]
    pattern = torch.rand(64, generator=torch.Generator().manual_seed(1))
    flat = poisoning.blend(x.flatten(1), pattern, 0.5)
    assert torch.equal(flat, poisoning.blend(x, pattern, 0.5).flatten(1))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"pattern": torch.rand(63), "alpha": 0.3}, "pattern"),
        ({"pattern": torch.full((64,), 2.0), "alpha": 0.3}, "pattern"),
        ({"pattern": torch.rand(64), "alpha": 1.5}, "alpha"),
        ({"pattern": torch.rand(64), "alpha": -0.1}, "alpha"),
    ],
)
def test_blend_rejects_bad_arguments(digits: data.Split, kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        poisoning.blend(digits.x_test[:2], **kwargs)
    with pytest.raises(ValueError, match="x"):
        poisoning.blend(torch.zeros(3), torch.rand(1), 0.3)


def test_warp_is_deterministic_smooth_and_keeps_its_input(digits: data.Split) -> None:
    x = digits.x_test[:8]
    before = x.clone()
    out = poisoning.warp(x, strength=1.0, seed=3)
    assert torch.equal(x, before)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, poisoning.warp(x, strength=1.0, seed=3))
    assert not torch.equal(out, poisoning.warp(x, strength=1.0, seed=4))
    assert (out - x).abs().mean() > 0.02  # it does move the ink
    assert torch.allclose(poisoning.warp(x, strength=0.0), x, atol=1e-5)
    weaker = (poisoning.warp(x, strength=0.25, seed=3) - x).abs().mean()
    assert weaker < (out - x).abs().mean()


def test_warp_moves_no_pixel_further_than_strength() -> None:
    """A linear ramp along the width shows the displacement: at most ``strength`` pixels."""
    ramp = torch.arange(16, dtype=torch.float32).repeat(16, 1) / 15
    x = ramp.reshape(1, 1, 16, 16)
    moved = (poisoning.warp(x, strength=1.5, grid=4, seed=0) - x).abs() * 15
    assert moved.max() <= 1.5 + 1e-4
    assert moved.max() > 0.5


def test_warp_on_flat_square_rows_matches_images(digits: data.Split) -> None:
    x = digits.x_test[:4]
    assert torch.equal(poisoning.warp(x.flatten(1)), poisoning.warp(x).flatten(1))


@pytest.mark.parametrize(
    ("x", "kwargs", "name"),
    [
        (torch.rand(2, 63), {}, "x"),
        (torch.rand(2, 1, 4, 4), {"strength": -1.0}, "strength"),
        (torch.rand(2, 1, 4, 4), {"grid": 1}, "grid"),
        (torch.rand(2, 1, 4, 4), {"seed": -1}, "seed"),
    ],
)
def test_warp_rejects_bad_arguments(x: torch.Tensor, kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        poisoning.warp(x, **kwargs)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), strength=st.floats(0.0, 3.0), grid=st.integers(2, 6))
def test_warp_stays_in_the_unit_box(seed: int, strength: float, grid: int) -> None:
    x = torch.rand(2, 3, 6, 7, generator=torch.Generator().manual_seed(seed % 1000))
    out = poisoning.warp(x, strength=strength, grid=grid, seed=seed)
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
