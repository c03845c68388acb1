"""Label poisoning without a trigger: training labels that clean reference models dispute.

Clean references trained on a trusted split say what each training row looks like. An honest
training set is disputed about as often as the references err on held-out trusted rows; a
targeted flip (rows of class d relabelled c) shows as class c disputed far more often than
expected, nearly always as d; a backdoor's dirty-label poison as class c disputed by rows of many
classes; symmetric label noise as every class disputed far more often than expected.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from gdsec.validation import check_labels, check_number

__all__ = ["LABEL_PATTERNS", "LabelDisputes", "label_disputes"]

#: What :func:`label_disputes` can find: nothing, a class-to-class flip, dirty-label rows of many
#: classes in one class (a backdoor's poison), or symmetric noise over every class.
LABEL_PATTERNS = ("none", "flip", "many-to-one", "symmetric")

_MIN_DISPUTED = 5  # a class needs this many disputed rows before a pattern is named in it


class LabelDisputes(NamedTuple):
    """What :func:`label_disputes` found.

    ``pattern`` is one of :data:`LABEL_PATTERNS`; ``target`` the class whose labels are disputed
    most beyond expectation and ``source`` what its disputed rows look like most often; ``rows``
    the disputed rows in the pattern (labelled ``target``, or all for symmetric noise) and
    ``source_rows`` those of them seen as ``source``; ``share`` their share of the rows (of class
    ``target``, or of all), ``expected`` the references' held-out error on the same rows and
    ``excess`` the difference; ``by_class`` each class's excess.

    Taught in chapter 10.
    """

    pattern: str
    target: int
    source: int
    rows: int
    source_rows: int
    share: float
    expected: float
    excess: float
    by_class: tuple[float, ...]


def _share(wrong: torch.Tensor, rows: torch.Tensor) -> float:
    """Fraction of ``rows`` (a mask) that are ``wrong`` (0 when there are none)."""
    return wrong[rows].float().mean().item() if rows.any() else 0.0


def label_disputes(
    y: torch.Tensor,
    seen_as: torch.Tensor,
    held_y: torch.Tensor,
    held_seen_as: torch.Tensor,
    *,
    margin: float,
) -> LabelDisputes:
    """Which training labels ``y`` the references dispute (they see the rows as ``seen_as``), and the pattern.

    ``held_y`` / ``held_seen_as`` are trusted labels and what reference-like models trained
    without those rows predict: their error, per class, is the share of disputes an honest class
    shows. A class whose share exceeds it by ``margin`` (with at least five disputed rows) is
    poisoned: a ``"flip"`` when half or more of its disputed rows look like one class, otherwise
    ``"many-to-one"``; when the median class exceeds it by ``margin / 2`` and all rows together by
    ``margin``, the noise is ``"symmetric"``.

    Taught in chapter 10.
    """
    check_labels("y", y)
    check_labels("seen_as", seen_as, n=y.shape[0])
    check_labels("held_y", held_y)
    check_labels("held_seen_as", held_seen_as, n=held_y.shape[0])
    margin = check_number("margin", margin, low=0.0, high=1.0, low_open=True)
    n_classes = int(max(y.max(), seen_as.max(), held_y.max(), held_seen_as.max())) + 1
    disputed, held_wrong = seen_as != y, held_seen_as != held_y
    expected_all = held_wrong.float().mean().item()
    excess = []
    for c in range(n_classes):
        expected = _share(held_wrong, held_y == c) if (held_y == c).any() else expected_all
        excess.append(_share(disputed, y == c) - expected if (y == c).any() else 0.0)
    share_all = disputed.float().mean().item()
    by_class = tuple(excess)
    present = torch.tensor([e for c, e in enumerate(excess) if (y == c).any()])
    if share_all - expected_all >= margin and present.median().item() >= margin / 2:
        rows = int(disputed.sum())
        return LabelDisputes(
            "symmetric",
            -1,
            -1,
            rows,
            0,
            share_all,
            expected_all,
            share_all - expected_all,
            by_class,
        )
    target = int(torch.tensor(excess).argmax())
    mine = disputed & (y == target)
    rows = int(mine.sum())
    if excess[target] < margin or rows < _MIN_DISPUTED:
        return LabelDisputes(
            "none", -1, -1, 0, 0, share_all, expected_all, share_all - expected_all, by_class
        )
    looks = torch.bincount(seen_as[mine], minlength=n_classes)
    source = int(looks.argmax())
    pattern = "flip" if 2 * int(looks[source]) >= rows else "many-to-one"
    share = _share(disputed, y == target)
    return LabelDisputes(
        pattern,
        target,
        source,
        rows,
        int(looks[source]),
        share,
        share - excess[target],
        excess[target],
        by_class,
    )
