"""Grader for the audit exercise: a backdoor trigger rebuilt from flagged rows (ch. 10)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from gdsec import poisoning
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

__all__ = ["grade_rebuild_trigger"]


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
