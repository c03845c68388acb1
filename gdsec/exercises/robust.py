"""Graders for the training-data exercises: label flipping (ch. 3) and the median (ch. 4)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from gdsec import aggregation, poisoning
from gdsec.exercises.core import (
    Failure,
    call,
    describe,
    diagnose,
    grader,
    matches,
    mismatch,
    need_tensor,
    unchanged,
)

__all__ = ["grade_coordinate_median", "grade_flip_labels"]


def _flip_case(
    fn: Callable[..., object], y: torch.Tensor, fraction: float, n_classes: int, seed: int
) -> torch.Tensor:
    """The student's flipped labels for one case, checked for type, shape, range and an untouched ``y``."""
    label = f"y of {len(y)} labels, fraction={fraction}, n_classes={n_classes}, seed={seed}"
    y_in = y.clone()
    got = need_tensor(
        call(fn, label, y_in, fraction, n_classes=n_classes, seed=seed),
        label,
        shape=y.shape,
        floating=False,
    )
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
        raise Failure(
            f"for {label}: exactly {expected} labels must change, yours changed {changed}. {hint}"
        )
    return got


@grader("flip_labels", "gdsec.poisoning.flip_labels")
def grade_flip_labels(fn: Callable[..., object], generator: torch.Generator) -> str:
    """Grade ``fn(y, fraction, n_classes=..., seed=...) -> y_flipped``.

    Taught in chapter 3.
    """
    cases = [(40, 0.1, 10), (37, 0.35, 3), (50, 0.5, 2), (20, 0.0, 4), (15, 1.0, 5)]
    for n, fraction, n_classes in cases:
        y = torch.randint(0, n_classes, (n,), generator=generator)
        seed = int(torch.randint(0, 1000, (1,), generator=generator))
        first = _flip_case(fn, y, fraction, n_classes, seed)
        again = _flip_case(fn, y, fraction, n_classes, seed)
        if not torch.equal(first, again):
            raise Failure(
                f"with the same seed={seed} your function returned different flips: draw from a private "
                "generator, gdsec.streams.random_stream(seed, purpose), not the global random state"
            )
    y = torch.randint(0, 10, (40,), generator=generator)
    rows = [
        frozenset(torch.nonzero(_flip_case(fn, y, 0.1, 10, s) != y).flatten().tolist())
        for s in (0, 1, 2)
    ]
    if len(set(rows)) == 1:
        which = sorted(rows[0])
        hint = "the first rows" if which == list(range(len(which))) else f"rows {which}"
        raise Failure(
            f"with seeds 0, 1 and 2 you flipped the same rows ({hint}): pick the rows at random, using the seed"
        )
    _check_symmetric(fn, generator)
    return (
        f"{len(cases)} cases (2, 3, 4, 5 and 10 classes, fractions 0 to 1) plus reproducibility, "
        "random rows and new labels spread evenly over the other classes"
    )


def _check_symmetric(fn: Callable[..., object], generator: torch.Generator) -> None:
    """:class:`Failure` unless every class's flipped rows land on each of the other classes about
    equally often (symmetric noise, rho / (K - 1) per class), as the chapter's argument assumes."""
    n_classes = 4
    y = torch.arange(1200) % n_classes
    seed = int(torch.randint(0, 1000, (1,), generator=generator))
    got = _flip_case(fn, y, 0.75, n_classes, seed)
    changed = got != y
    counts = torch.zeros(n_classes, n_classes, dtype=torch.long)
    counts.index_put_((y[changed], got[changed]), torch.ones_like(y[changed]), accumulate=True)
    others = counts[~torch.eye(n_classes, dtype=torch.bool)].reshape(n_classes, n_classes - 1)
    if (others > 0).sum(1).max() <= 1:
        mapping = {c: int(counts[c].argmax()) for c in range(n_classes)}
        raise Failure(
            f"for 1200 labels of {n_classes} classes, fraction=0.75, seed={seed}: every flipped label of a "
            f"class went to ONE other class ({mapping}): that is pair-flip noise such as (y + 1) % n_classes. "
            "Draw the new label uniformly among the other n_classes - 1 classes; the chapter's argument "
            "(the clean class keeps the argmax until rho = (K - 1) / K) holds only for that symmetric noise"
        )
    if (others.min(1).values < 0.5 * others.max(1).values).any():
        raise Failure(
            f"for 1200 labels of {n_classes} classes, fraction=0.75, seed={seed}: your new labels favour some "
            f"classes (flipped rows per (old class, new class): {others.tolist()}): draw the new label "
            "uniformly among the other n_classes - 1 classes"
        )


def _median_cases(generator: torch.Generator) -> list[tuple[str, torch.Tensor]]:
    """Worker gradients: odd and even counts, one worker, and attackers sending huge values."""
    cases = []
    for n, d, bad in ((5, 3, 2), (4, 2, 1), (7, 6, 3), (1, 4, 0), (2, 1, 0), (6, 3, 0)):
        grads = torch.randn(n, d, generator=generator, dtype=torch.float64)
        grads[:bad] = 1000.0 + torch.rand(bad, d, generator=generator, dtype=torch.float64)
        cases.append(
            (f"{n} workers x {d} coordinates ({bad} attacker(s) sending about 1000)", grads)
        )
    return cases


@grader("coordinate_median", "gdsec.aggregation.coordinate_median")
def grade_coordinate_median(fn: Callable[..., object], generator: torch.Generator) -> str:
    """Grade ``fn(grads) -> (d,)``, the coordinate-wise median.

    Taught in chapter 4.
    """
    cases = _median_cases(generator)
    for label, grads in cases:
        n, d = grads.shape
        g_in = grads.clone()
        out = call(fn, label, g_in)
        unchanged([grads], [g_in], ["grads"], label)
        if isinstance(out, torch.Tensor) and tuple(out.shape) == (n,) and n != d:
            raise Failure(
                f"for {label}: you returned one value per worker (shape ({n},)): take the median over workers, dim=0"
            )
        got = need_tensor(out, label, shape=(d,), floating=True)
        expected = aggregation.coordinate_median(grads)
        if not matches(got, expected):
            ordered = grads.sort(dim=0).values
            hint = diagnose(
                got,
                [
                    (
                        f"you averaged the workers: the attackers' values (about 1000) pulled your result to "
                        f"{describe(got)}; the median ignores up to half the workers",
                        grads.mean(dim=0),
                    ),
                    (
                        f"with an even number of workers ({n}) you took the lower middle value "
                        "(what torch.median does): average the two middle values",
                        ordered[(n - 1) // 2],
                    ),
                    (
                        f"with an even number of workers ({n}) you took the upper middle value: "
                        "average the two middle values",
                        ordered[n // 2],
                    ),
                ],
            )
            raise mismatch(
                label,
                expected,
                got,
                hint=hint or "sort each coordinate over the workers and take the middle",
            )
    return f"{len(cases)} cases (1, 2, 4, 5, 6 and 7 workers; up to 3 attackers out of 7)"
