"""Graders for the training-data exercises: label flipping (ch. 3), the median (ch. 4), trigger recovery (ch. 10)."""

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
    not_none,
    unchanged,
)

__all__ = ["grade_coordinate_median", "grade_flip_labels", "grade_rebuild_trigger"]


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


def _trigger_case(
    generator: torch.Generator, n_classes: int, size: int, d: int
) -> tuple[torch.Tensor, ...]:
    """Rows with 'stroke' features bright in every class, strokes of the target class's own, a planted
    trigger on 5 % of the rows (taken from other classes) that adds ink on some features and removes
    it on others, a faint feature below half the trigger's strength, and flagged rows of several
    labels. Returns ``(x, y, flagged, target)``."""
    n = 200
    x = 0.2 + 0.3 * torch.rand(n, d, generator=generator)
    y = torch.randint(0, n_classes, (n,), generator=generator)
    order = torch.randperm(d, generator=generator)
    strokes, own = order[:3], order[3:5]
    trigger, faint = order[5 : 5 + size], order[5 + size]
    x[:, strokes] = 1.0
    target = int(torch.randint(0, n_classes, (1,), generator=generator))
    x[(y == target).nonzero()[:, None], own] = 1.0  # the target class's own strokes
    others = torch.nonzero(y != target).flatten()
    poisoned = others[torch.randperm(len(others), generator=generator)[:10]]
    ink = torch.where(torch.arange(size) % 2 == 0, 0.95, 0.0)  # added ink, removed ink, added, ...
    x[poisoned[:, None], trigger] = ink
    x[poisoned, faint] = 0.45 + 0.1 * torch.rand(len(poisoned), generator=generator)
    y[poisoned] = target
    false_alarms = torch.nonzero(y != target).flatten()[:4]
    return x, y, torch.cat([poisoned, false_alarms]), target


def _as_trigger(value: object, label: str, d: int) -> tuple[list[int], torch.Tensor]:
    """The student's ``(features, values)`` as sorted distinct indices and their values, or :class:`Failure`."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise Failure(
            f"for {label}: return a pair (features, values): the flat feature indices and the value to stamp "
            f"on each, got {describe(value)}"
        )
    features, values = value
    if isinstance(features, torch.Tensor):
        if features.is_floating_point():
            raise Failure(
                f"for {label}: your features are float values {describe(features)}: return feature INDICES"
            )
        features = features.flatten().tolist()
    if not isinstance(features, list | tuple) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in features
    ):
        raise Failure(
            f"for {label}: return the features as a tensor or list of ints, got {describe(features)}"
        )
    if len(set(features)) != len(features) or not all(0 <= v < d for v in features):
        raise Failure(f"for {label}: return distinct flat indices in [0, {d}), got {features}")
    values = need_tensor(
        torch.as_tensor(values, dtype=torch.float64), label, shape=(len(features),), floating=True
    )
    order = sorted(range(len(features)), key=features.__getitem__)
    return [features[i] for i in order], values[order]


@grader("rebuild_trigger", "gdsec.poisoning.rebuild_trigger")
def grade_rebuild_trigger(fn: Callable[..., object], generator: torch.Generator) -> str:
    """Grade ``fn(x, y, flagged, target, max_features) -> (features, values)``, a trigger rebuilt from flagged rows.

    Taught in chapter 10.
    """
    settings = ((3, 4, 16, 8), (5, 2, 64, 9), (4, 3, 32, 2))
    for n_classes, size, d, max_features in settings:
        x, y, flagged, target = _trigger_case(generator, n_classes, size, d)
        label = f"{len(x)} rows of {d} features, {len(flagged)} flagged, target={target}, max_features={max_features}"
        inputs = [x.clone(), y.clone(), flagged.clone()]
        out = not_none(call(fn, label, *inputs, target, max_features), label)
        unchanged([x, y, flagged], inputs, ["x", "y", "flagged"], label)
        got, values = _as_trigger(out, label, d)
        features, expected = poisoning.rebuild_trigger(
            x, y, flagged, target, max_features=max_features
        )
        rows = flagged[y[flagged] == target]
        mean, others = x[rows].mean(0), x[y != target].mean(0)
        if got != features.tolist():

            def kept(score: torch.Tensor, k: int = max_features) -> list[int]:
                top = torch.topk(score, k)
                return top.indices[top.values >= 0.5 * top.values[0]].sort().values.tolist()

            hints = [
                (
                    "you ranked features by the signed difference: ink the trigger REMOVED is missing; "
                    "take the difference in absolute value",
                    kept(mean - others),
                ),
                (
                    "you ranked features by the flagged rows' mean alone: features bright in EVERY class win; "
                    "subtract the mean of the rows of the other classes",
                    kept(mean),
                ),
                (
                    "you used every flagged row: keep only the flagged rows labelled `target`",
                    kept((x[flagged].mean(0) - others).abs()),
                ),
                (
                    "you ignored the flags: the rows of class `target` are mostly genuine, so their own "
                    "strokes win and the trigger, on a few rows, is diluted; average only the FLAGGED rows "
                    "labelled `target`",
                    kept((x[y == target].mean(0) - others).abs()),
                ),
                (
                    "you kept max_features features: keep only those whose difference is at least half of the "
                    "largest",
                    torch.topk((mean - others).abs(), max_features).indices.sort().values.tolist(),
                ),
            ]
            hint = next((message for message, wrong in hints if got == wrong), None)
            raise mismatch(
                label,
                features,
                torch.tensor(got),
                hint=hint or "compare the two means feature by feature",
            )
        if not matches(values, expected.double()):
            hint = diagnose(
                values,
                [
                    (
                        "you stamped 1 on every feature: stamp the flagged rows' mean, so removed ink is stamped dark",
                        torch.ones_like(values),
                    ),
                    (
                        "you returned the differences: the values to stamp are the flagged target rows' mean",
                        (mean - others)[features].double(),
                    ),
                    (
                        "you returned the absolute differences: the values to stamp are the flagged target rows' mean",
                        (mean - others).abs()[features].double(),
                    ),
                    (
                        "you averaged every flagged row: average only the flagged rows labelled `target`",
                        x[flagged].mean(0)[features].double(),
                    ),
                ],
            )
            raise mismatch(
                label,
                expected,
                values,
                hint=hint or "the value of each feature is the flagged target rows' mean",
            )
    return (
        f"{len(settings)} poisoned data sets (16 to 64 features, 5 % of the rows poisoned, triggers that "
        "add and remove ink, strokes of the target class's own, a faint feature, false alarms among the flags)"
    )
