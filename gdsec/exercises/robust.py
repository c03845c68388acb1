"""Checkers for the training-data exercises: label flipping (ch. 3), the median (ch. 4), trigger recovery (ch. 10)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from gdsec import aggregation, poisoning
from gdsec.exercises.core import (
    Failure,
    call,
    checker,
    describe,
    diagnose,
    matches,
    mismatch,
    need_tensor,
    not_none,
    unchanged,
)

__all__ = ["check_coordinate_median", "check_flip_labels", "check_reconstruct_trigger"]


def _flip_case(fn: Callable[..., object], y: torch.Tensor, fraction: float, n_classes: int, seed: int) -> torch.Tensor:
    """The student's flipped labels for one case, checked for type, shape, range and an untouched ``y``."""
    label = f"y of {len(y)} labels, fraction={fraction}, n_classes={n_classes}, seed={seed}"
    y_in = y.clone()
    got = need_tensor(call(fn, label, y_in, fraction, n_classes=n_classes, seed=seed), label, shape=y.shape, floating=False)
    unchanged([y], [y_in], ["y"], label)
    if got.min() < 0 or got.max() >= n_classes:
        raise Failure(
            f"for {label}: you returned labels outside [0, {n_classes}) (got {int(got.min())} to {int(got.max())}): "
            f"wrap around with % n_classes"
        )
    expected = int((poisoning.flip_labels(y, fraction, n_classes=n_classes, seed=seed) != y).sum())
    changed = int((got != y).sum())
    if changed != expected:
        if changed == int(fraction * len(y)) and changed < expected:
            hint = f"you truncated fraction * N = {fraction * len(y):.2f} to {changed}: round it (round(fraction * N))"
        elif changed < expected:
            hint = (
                "some of your flips kept the original label: draw the new label among the OTHER "
                "n_classes - 1 classes (e.g. (y + randint(1, n_classes)) % n_classes)"
            )
        else:
            hint = "you changed too many labels: flip exactly round(fraction * N) rows, each once"
        raise Failure(f"for {label}: exactly {expected} labels must change, yours changed {changed}. {hint}")
    return got


def _flip_labels(fn: Callable[..., object], generator: torch.Generator) -> str:
    """Label flipping: exact counts, a different class for every flipped row, random rows, reproducible."""
    cases = [(40, 0.1, 10), (37, 0.35, 3), (50, 0.5, 2), (20, 0.0, 4), (15, 1.0, 5)]
    for n, fraction, n_classes in cases:
        y = torch.randint(0, n_classes, (n,), generator=generator)
        seed = int(torch.randint(0, 1000, (1,), generator=generator))
        first = _flip_case(fn, y, fraction, n_classes, seed)
        again = _flip_case(fn, y, fraction, n_classes, seed)
        if not torch.equal(first, again):
            raise Failure(
                f"with the same seed={seed} your function returned different flips: draw from a private "
                "generator, torch.Generator().manual_seed(seed), not the global random state"
            )
    y = torch.randint(0, 10, (40,), generator=generator)
    rows = [frozenset(torch.nonzero(_flip_case(fn, y, 0.1, 10, s) != y).flatten().tolist()) for s in (0, 1, 2)]
    if len(set(rows)) == 1:
        which = sorted(rows[0])
        hint = "the first rows" if which == list(range(len(which))) else f"rows {which}"
        raise Failure(
            f"with seeds 0, 1 and 2 you flipped the same rows ({hint}): pick the rows at random, using the seed"
        )
    return f"{len(cases)} cases (2, 3, 4, 5 and 10 classes, fractions 0 to 1) plus reproducibility and random rows"


def _median_cases(generator: torch.Generator) -> list[tuple[str, torch.Tensor]]:
    """Worker gradients: odd and even counts, one worker, and attackers sending huge values."""
    cases = []
    for n, d, bad in ((5, 3, 2), (4, 2, 1), (7, 6, 3), (1, 4, 0), (2, 1, 0), (6, 3, 0)):
        grads = torch.randn(n, d, generator=generator, dtype=torch.float64)
        grads[:bad] = 1000.0 + torch.rand(bad, d, generator=generator, dtype=torch.float64)
        cases.append((f"{n} workers x {d} coordinates ({bad} attacker(s) sending about 1000)", grads))
    return cases


def _coordinate_median(fn: Callable[..., object], generator: torch.Generator) -> str:
    """The coordinate-wise median on odd and even worker counts, with and without attackers."""
    cases = _median_cases(generator)
    for label, grads in cases:
        n, d = grads.shape
        g_in = grads.clone()
        out = call(fn, label, g_in)
        unchanged([grads], [g_in], ["grads"], label)
        if isinstance(out, torch.Tensor) and tuple(out.shape) == (n,) and n != d:
            raise Failure(f"for {label}: you returned one value per worker (shape ({n},)): take the median over workers, dim=0")
        got = need_tensor(out, label, shape=(d,), floating=True)
        expected = aggregation.coordinate_median(grads)
        if not matches(got, expected):
            ordered = grads.sort(dim=0).values
            hint = diagnose(got, [
                (f"you averaged the workers: the attackers' values (about 1000) pulled your result to "
                 f"{describe(got)}; the median ignores up to half the workers", grads.mean(dim=0)),
                (f"with an even number of workers ({n}) you took the lower middle value (what torch.median does): "
                 "average the two middle values", ordered[(n - 1) // 2]),
                (f"with an even number of workers ({n}) you took the upper middle value: average the two middle values",
                 ordered[n // 2]),
            ])
            raise mismatch(label, expected, got, hint=hint or "sort each coordinate over the workers and take the middle")
    return f"{len(cases)} cases (1, 2, 4, 5, 6 and 7 workers; up to 3 attackers out of 7)"


def _reference_trigger(x: torch.Tensor, y: torch.Tensor, flagged: torch.Tensor, target: int, pixels: int) -> torch.Tensor:
    """The tested trigger reconstruction (``gdsec.poisoning`` after the audit split, ``gdsec.audit`` before)."""
    rebuild = poisoning.reconstruct_trigger
    return rebuild(x, y, flagged, target, pixels=pixels)


def _trigger_case(generator: torch.Generator, n_classes: int, pixels: int, d: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Rows with 'stroke' pixels bright in every class, a planted trigger, and flagged rows of several labels."""
    n = 60
    x = 0.3 * torch.rand(n, d, generator=generator)
    y = torch.randint(0, n_classes, (n,), generator=generator)
    order = torch.randperm(d, generator=generator)
    strokes, trigger = order[:3], order[3 : 3 + pixels]
    x[:, strokes] = 1.0
    target = int(torch.randint(0, n_classes, (1,), generator=generator))
    poisoned = torch.randperm(n, generator=generator)[:10]
    x[poisoned[:, None], trigger] = 0.9
    y[poisoned] = target
    false_alarms = torch.nonzero(y != target).flatten()[:4]
    return x, y, torch.cat([poisoned, false_alarms]), target


def _as_indices(value: object, label: str, pixels: int, d: int) -> list[int]:
    """The student's answer as a list of ``pixels`` distinct pixel indices, or :class:`Failure`."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            raise Failure(f"for {label}: you returned float values {describe(value)}: return pixel INDICES (torch.topk(...).indices)")
        value = value.flatten().tolist()
    if not isinstance(value, list | tuple) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise Failure(f"for {label}: return the trigger's flat pixel indices as a tensor or list of ints, got {describe(value)}")
    if len(value) != pixels or len(set(value)) != pixels or not all(0 <= v < d for v in value):
        raise Failure(f"for {label}: return {pixels} distinct flat indices in [0, {d}), got {value}")
    return sorted(value)


def _reconstruct_trigger(fn: Callable[..., object], generator: torch.Generator) -> str:
    """Trigger recovery from flagged rows: the pixels the flagged target rows share and other classes lack."""
    settings = ((3, 4, 16), (5, 1, 64), (4, 3, 32))
    for n_classes, pixels, d in settings:
        x, y, flagged, target = _trigger_case(generator, n_classes, pixels, d)
        label = f"{len(x)} rows of {d} pixels, {len(flagged)} flagged, target={target}, pixels={pixels}"
        inputs = [x.clone(), y.clone(), flagged.clone()]
        out = not_none(call(fn, label, *inputs, target, pixels), label)
        unchanged([x, y, flagged], inputs, ["x", "y", "flagged"], label)
        got = _as_indices(out, label, pixels, d)
        expected = _reference_trigger(x, y, flagged, target, pixels).tolist()
        if got != expected:
            rows = flagged[y[flagged] == target]
            def top(score: torch.Tensor, k: int = pixels) -> torch.Tensor:
                return torch.topk(score.flatten(), k).indices.sort().values

            hint = diagnose(torch.tensor(got), [
                ("you ranked pixels by the flagged rows' mean alone: pixels bright in EVERY digit win; subtract the "
                 "mean of the rows of the other classes", top(x[rows].mean(0))),
                ("you took the pixels the flagged rows LACK (smallest differences): take the largest",
                 top(-(x[rows].mean(0) - x[y != target].mean(0)))),
            ])
            raise mismatch(label, torch.tensor(expected), torch.tensor(got), hint=hint or "compare the two means pixel by pixel")
    return f"{len(settings)} poisoned data sets (16 to 64 pixels, triggers of 1 to 4 pixels, false alarms among the flags)"


check_flip_labels = checker("flip_labels", "gdsec.poisoning.flip_labels", _flip_labels)
check_flip_labels.__doc__ = "Check ``fn(y, fraction, n_classes=..., seed=...) -> y_flipped``.\n\nTaught in chapter 3.\n"
check_coordinate_median = checker("coordinate_median", "gdsec.aggregation.coordinate_median", _coordinate_median)
check_coordinate_median.__doc__ = "Check ``fn(grads) -> (d,)``, the coordinate-wise median.\n\nTaught in chapter 4.\n"
check_reconstruct_trigger = checker("reconstruct_trigger", "the audit's reconstruct_trigger", _reconstruct_trigger)
check_reconstruct_trigger.__doc__ = (
    "Check ``fn(x, y, flagged, target, pixels) -> indices`` (the trigger rebuilt from flagged rows).\n\nTaught in chapter 10.\n"
)
