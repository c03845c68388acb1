"""The checkers of attack settings: ``(name, value) -> checked value`` or ``ValueError`` naming ``name``.

:func:`gdsec.attacks.attack_contract` takes one per keyword setting of an attack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gdsec.validation import check_int, check_number

__all__ = [
    "Checker",
    "flag",
    "non_negative",
    "optional_positive",
    "positive",
    "positive_int",
    "seed_value",
]

#: A setting checker: ``(name, value) -> checked value`` or ``ValueError`` naming ``name``.
Checker = Callable[[str, Any], Any]


def positive_int(name: str, value: object) -> int:
    """An integer >= 1. Used in chapter 5."""
    return check_int(name, value, low=1)


def non_negative(name: str, value: object) -> float:
    """A finite number >= 0. Used in chapter 5."""
    return check_number(name, value, low=0.0)


def positive(name: str, value: object) -> float:
    """A finite number > 0. Used in chapter 5."""
    return check_number(name, value, low=0.0, low_open=True)


def optional_positive(name: str, value: object) -> float | None:
    """None, or a finite number > 0. Used in chapter 5."""
    return None if value is None else positive(name, value)


def seed_value(name: str, value: object) -> int:
    """A seed: an integer >= 0 (turned into a generator with ``gdsec.validation.check_seed``). Used in chapter 5."""
    return check_int(name, value, low=0)


def flag(name: str, value: object) -> bool:
    """True or False. Used in chapter 5."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value
