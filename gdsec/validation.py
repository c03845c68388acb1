"""Argument checks shared by every public function: one clear ``ValueError`` per bad input."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "NORMS",
    "check_batch",
    "check_choice",
    "check_keywords",
    "check_seed",
    "check_fraction",
    "check_int",
    "check_labels",
    "check_model",
    "check_norm",
    "check_number",
    "check_unit_tensor",
]


def check_number(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` naming ``name`` and the allowed range.

    Used in chapters 1-10.
    """
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    allowed = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number in {allowed}, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number in {allowed}, got {value!r}")
    if low is not None and (number < low or (low_open and number == low)):
        raise ValueError(f"{name} must be in {allowed}, got {value!r}")
    if high is not None and (number > high or (high_open and number == high)):
        raise ValueError(f"{name} must be in {allowed}, got {value!r}")
    return number


def check_int(name: str, value: object, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int, or raise ``ValueError`` naming ``name`` and the allowed range.

    Used in chapters 1-10.
    """
    allowed = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer in {allowed}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer in {allowed}, got {value!r}")
    return int(value)


def check_fraction(name: str, value: object) -> float:
    """Return ``value`` if it is a fraction in [0, 1].

    Used in chapters 1-10.
    """
    return check_number(name, value, low=0.0, high=1.0)


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``.

    Used in chapters 1-10.
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value  # type: ignore[return-value]


#: The perturbation norms the attacks and the bounds support: L-infinity and L2.
NORMS = ("inf", "2")


def check_norm(name: str, value: object) -> str:
    """``value`` as "inf" or "2" (``math.inf`` and ``2`` are accepted too), else ``ValueError`` naming ``name``.

    Used in chapters 5, 6 and 8.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = "inf" if value == math.inf else "2" if value == 2 else str(value)
    return check_choice(name, value, NORMS)


def check_unit_tensor(name: str, x: object, *, min_dim: int = 1) -> torch.Tensor:
    """Return ``x`` if it is a finite floating tensor with values in [0, 1] and a batch axis.

    Used in chapters 1-10.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dimension(s) (batch first), got shape {tuple(x.shape)}"
        )
    if x.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must not contain NaN or Inf")
    if x.min() < 0 or x.max() > 1:
        raise ValueError(
            f"{name} must have values in [0, 1], got range [{x.min().item():.3g}, {x.max().item():.3g}]"
        )
    return x


def check_labels(
    name: str, y: object, *, n: int | None = None, n_classes: int | None = None
) -> torch.Tensor:
    """Return ``y`` if it is a 1-D integer tensor of ``n`` labels in [0, n_classes).

    Used in chapters 1-10.
    """
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of integer labels, got {type(y).__name__}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer labels, got dtype {y.dtype}")
    if y.dim() != 1:
        raise ValueError(f"{name} must be 1-D (one label per row), got shape {tuple(y.shape)}")
    if n is not None and y.shape[0] != n:
        raise ValueError(f"{name} must have {n} labels (one per input row), got {y.shape[0]}")
    if y.numel() and y.min() < 0:
        raise ValueError(f"{name} must be in [0, {n_classes or 'n_classes'}), got {y.min().item()}")
    if n_classes is not None and y.numel() and y.max() >= n_classes:
        raise ValueError(f"{name} must be in [0, {n_classes}), got {y.max().item()}")
    return y


def check_model(name: str, model: object) -> torch.nn.Module:
    """Return ``model`` if it is a ``torch.nn.Module``.

    Used in chapters 1-10.
    """
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    return model


def check_seed(seed: object) -> int:
    """Return ``seed`` if it is an int >= 0, or raise ``ValueError`` naming ``seed``.

    Draws come from ``gdsec.streams.random_stream(seed, purpose)``, never from the seed directly.
    Used in chapters 1-10.
    """
    return check_int("seed", seed, low=0)


def check_batch(name: str, x: object, *, unit: bool = False, min_rows: int = 1) -> torch.Tensor:
    """``x`` as a finite floating-point tensor with a batch axis (N, ...), N >= ``min_rows``.

    With ``unit=True`` the values must also lie in [0, 1]. Raises ``ValueError`` naming ``name``.
    Used in chapters 1-10.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise ValueError(
            f"{name} must be a floating-point tensor with a batch axis, shape (N, ...)"
        )
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} must hold at least {min_rows} row(s), got {x.shape[0]}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must not contain NaN or Inf")
    if unit and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"{name} must have values in [0, 1], got [{x.min().item():.3g}, {x.max().item():.3g}]"
        )
    return x


def check_keywords(name: str, given: dict[str, object], allowed: Sequence[str]) -> None:
    """Raise ``ValueError`` naming every key of ``given`` that is not in ``allowed`` (``name`` is the function).

    Used in chapters 1-10.
    """
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(
            f"{name} got unknown setting(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed)) or 'none'}"
        )
