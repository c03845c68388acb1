"""What every exercise grader shares: the result, safe calls of the student's function, and messages."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from gdsec.streams import random_stream

__all__ = [
    "Body",
    "Failure",
    "Grader",
    "Result",
    "call",
    "describe",
    "diagnose",
    "grader",
    "matches",
    "mismatch",
    "need_tensor",
    "not_none",
    "unchanged",
]


@dataclass(frozen=True)
class Result:
    """A grader's answer: ``passed`` and ``feedback`` a student can act on (printing shows the feedback).

    Used in chapters 1, 2, 3, 4, 5, 6, 7, 8, 9 and 10.
    """

    passed: bool
    feedback: str

    def __str__(self) -> str:
        """The feedback."""
        return self.feedback


class Failure(Exception):
    """Raised inside a grader's body to stop at the first failed property; becomes ``Result(False, ...)``.

    Used in chapters 1, 2, 3, 4, 5, 6, 7, 8, 9 and 10.
    """


#: A grader: ``(fn, *, seed=0) -> Result``.
Grader = Callable[..., Result]
#: What :func:`grader` wraps: ``(fn, generator) -> summary``, raising :class:`Failure` at the first failed property.
Body = Callable[[Callable[..., object], torch.Generator], str]


def describe(value: object, digits: int = 4) -> str:
    """A short readable rendering of ``value`` (a tensor's values, rounded, and its shape).

    Used in chapters 1, 2, 3, 4, 5, 6, 7, 8, 9 and 10.
    """
    if isinstance(value, torch.Tensor):
        if value.numel() <= 12:
            shown = [round(v, digits) for v in value.detach().double().flatten().tolist()]
            if value.dim() <= 1 and value.is_floating_point():
                return f"tensor({shown})"
            if value.dim() <= 1:
                return f"tensor({[int(v) for v in shown]})"
            return f"tensor of shape {tuple(value.shape)} with values {shown}"
        return f"tensor of shape {tuple(value.shape)}"
    if isinstance(value, list | tuple) and len(value) <= 4:
        return "[" + ", ".join(describe(v, digits) for v in value) + "]"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def call(fn: Callable[..., object], label: str, *args: object, **kwargs: object) -> object:
    """``fn(*args, **kwargs)``, or :class:`Failure` naming the input ``label`` and the exception it raised.

    Used in chapters 1, 2, 3, 4, 5, 6, 7, 8, 9 and 10.
    """
    try:
        return fn(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - a crashing answer is feedback, never an error
        raise Failure(
            f"your function crashed on {label}: {type(error).__name__}: {error}"
        ) from None


def not_none(value: object, label: str) -> object:
    """``value``, or :class:`Failure` saying the function returned None (a forgotten ``return``).

    Used in chapters 1, 2, 3, 4, 5, 6, 7, 8, 9 and 10.
    """
    if value is None:
        raise Failure(
            f"for {label}: your function returned None: did you forget the `return` line?"
        )
    return value


def need_tensor(
    value: object, label: str, *, shape: Sequence[int], floating: bool | None = None
) -> torch.Tensor:
    """``value`` if it is a tensor of ``shape`` (and floating or integer as asked), else :class:`Failure`.

    Used in chapters 1, 2, 3, 4, 5, 6, 7, 8, 9 and 10.
    """
    not_none(value, label)
    if (
        isinstance(value, tuple)
        and hasattr(value, "values")
        and isinstance(value.values, torch.Tensor)
    ):
        raise Failure(
            f"for {label}: your function returned a (values, indices) pair, as torch.median(..., dim=0) "
            "and torch.max(..., dim=0) do: return its `.values`"
        )
    if not isinstance(value, torch.Tensor):
        raise Failure(
            f"for {label}: your function should return a torch.Tensor, got {type(value).__name__}"
        )
    if tuple(value.shape) != tuple(shape):
        raise Failure(
            f"for {label}: your function returned shape {tuple(value.shape)}, expected {tuple(shape)}"
        )
    if floating is True and not value.is_floating_point():
        raise Failure(
            f"for {label}: your function returned dtype {value.dtype}, expected a floating-point tensor"
        )
    if floating is False and (value.is_floating_point() or value.dtype == torch.bool):
        raise Failure(
            f"for {label}: your function returned dtype {value.dtype}, expected integer labels (torch.long)"
        )
    if value.is_floating_point() and not torch.isfinite(value).all():
        raise Failure(f"for {label}: your function returned NaN or Inf: {describe(value)}")
    return value


def unchanged(
    before: Sequence[torch.Tensor], after: Sequence[torch.Tensor], names: Sequence[str], label: str
) -> None:
    """:class:`Failure` if the student's function changed one of its input tensors in place.

    Used in chapters 1, 2, 3, 4, 5, 6, 7, 8, 9 and 10.
    """
    for name, old, new in zip(names, before, after, strict=True):
        if old.shape != new.shape or not torch.equal(old, new):
            raise Failure(
                f"for {label}: your function changed its input `{name}` in place; work on a copy "
                f"(write `a = a - ...` instead of `a -= ...`, or start from `{name}.clone()`)"
            )


def matches(value: torch.Tensor, expected: torch.Tensor, *, atol: float = 1e-5) -> bool:
    """Whether ``value`` has ``expected``'s shape and values (to ``atol``, relative 1e-4).

    Used in chapters 1, 2, 3, 4, 5, 6, 7, 8, 9 and 10.
    """
    return tuple(value.shape) == tuple(expected.shape) and torch.allclose(
        value.detach().double(), expected.detach().double(), atol=atol, rtol=1e-4
    )


def diagnose(
    value: torch.Tensor, variants: Sequence[tuple[str, torch.Tensor]], *, atol: float = 1e-5
) -> str | None:
    """The message of the first known mistake whose output ``value`` reproduces, or None.

    Used in chapters 1, 2, 3, 4, 5, 6, 7, 8, 9 and 10.
    """
    for message, wrong in variants:
        if matches(value, wrong, atol=atol):
            return message
    return None


def mismatch(label: str, expected: object, got: object, *, hint: str = "") -> Failure:
    """A :class:`Failure` saying what input, what was expected and what came back (plus a ``hint``).

    Used in chapters 1, 2, 3, 4, 5, 6, 7, 8, 9 and 10.
    """
    text = f"for {label}: the reference returns {describe(expected)} but yours returned {describe(got)}"
    if (
        isinstance(expected, torch.Tensor)
        and isinstance(got, torch.Tensor)
        and expected.shape == got.shape
    ):
        if expected.numel() > 12:
            expected, got = expected.detach(), got.detach()
            gap = (expected.double() - got.double()).abs()
            where = tuple(int(i) for i in torch.unravel_index(gap.argmax(), gap.shape))
            text = (
                f"for {label}: your answer differs from the reference most at index {where}: "
                f"expected {float(expected[where]):.4g}, got {float(got[where]):.4g}"
            )
    return Failure(text + (f". {hint}" if hint else ""))


def grader(name: str, reference: str) -> Callable[[Body], Grader]:
    """Decorator: turn ``body(fn, generator) -> summary`` into the grader of exercise ``name``.

    The grader ``(fn, *, seed=0) -> Result`` keeps the body's name and docstring. It raises
    ``ValueError`` when ``fn`` is not callable and otherwise never raises: a wrong or crashing ``fn``
    is reported in the result's feedback, compared with ``reference``. ``seed`` draws the cases.
    Used in chapters 1, 2, 3, 4, 5, 6, 7, 8, 9 and 10.
    """

    def wrap(body: Body) -> Grader:
        def grade(fn: object, *, seed: int = 0) -> Result:
            if not callable(fn):
                raise ValueError(f"fn must be a function (callable), got {type(fn).__name__}")
            generator = random_stream(seed, "exercises.grade")
            try:
                summary = body(fn, generator)
            except Failure as failure:
                text = re.sub(
                    r"\. ([a-z])", lambda match: ". " + match.group(1).upper(), str(failure)
                )
                return Result(False, f"Not yet ({name}, cases drawn with seed={seed}): {text}")
            except Exception as error:  # noqa: BLE001 - an answer the grader cannot read is still feedback
                return Result(
                    False,
                    f"Not yet ({name}): the grader could not use what your function returned "
                    f"({type(error).__name__}: {error}); check the type and shape of your return value",
                )
            return Result(
                True, f"Passed ({name}): {summary}; your function agrees with {reference}."
            )

        for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(grade, attribute, getattr(body, attribute))
        return grade

    return wrap
