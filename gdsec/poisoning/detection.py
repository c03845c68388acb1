"""Finding the poisoned rows: spectral signatures in the learned representation, or loss filtering."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from gdsec.models import eval_mode
from gdsec.poisoning._rows import count_rows
from gdsec.validation import check_batch, check_choice, check_labels, check_model, check_number

__all__ = [
    "DETECT_METHODS",
    "Detection",
    "detect_poison",
    "detection_quality",
    "penultimate_features",
    "quality_by_label",
]

DETECT_METHODS = ("spectral", "loss")


class Detection(NamedTuple):
    """What a poison detector found: suspected row indices (sorted) and one suspicion score per row.

    Taught in chapter 3.
    """

    flagged: torch.Tensor
    scores: torch.Tensor


def penultimate_features(
    model: nn.Module, x: torch.Tensor, *, batch_size: int = 1024
) -> torch.Tensor:
    """The inputs of the model's last ``nn.Linear`` layer (its learned representation), flattened per row.

    Taught in chapter 3.
    """
    check_model("model", model)
    check_batch("x", x)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model must end in an nn.Linear layer to expose a representation")
    captured: list[torch.Tensor] = []
    handle = linears[-1].register_forward_hook(
        lambda _m, inputs, _out: captured.append(inputs[0].detach())
    )
    try:
        with eval_mode(model), torch.no_grad():
            for i in range(0, x.shape[0], batch_size):
                model(x[i : i + batch_size])
    finally:
        handle.remove()
    return torch.cat(captured).flatten(1)


def _spectral_scores(features: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per class: squared projection on the top singular vector of the centred features, over the class median."""
    scores = torch.zeros(features.shape[0])
    for label in y.unique():
        rows = torch.nonzero(y == label).flatten()
        if len(rows) < 2:
            continue
        centred = features[rows] - features[rows].mean(0)
        top = torch.linalg.svd(centred.double(), full_matrices=False).Vh[0]
        projection = (centred.double() @ top).pow(2)
        scores[rows] = (projection / projection.median().clamp_min(1e-12)).float()
    return scores


def _top_per_label(scores: torch.Tensor, y: torch.Tensor, share: float) -> torch.Tensor:
    """Within each label c, the ``round(share * n_c)`` rows with the highest scores (sorted row indices)."""
    picked = []
    for label in y.unique():
        rows = torch.nonzero(y == label).flatten()
        k = min(len(rows), count_rows(share, len(rows)))
        picked.append(rows[torch.topk(scores[rows], k).indices])
    return torch.cat(picked).sort().values


def detect_poison(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    method: str = "spectral",
    expected_fraction: float = 0.05,
    removal: float = 1.5,
) -> Detection:
    """Flag the most suspicious training rows of a trained model, as many as ``removal * expected_fraction`` allows.

    ``"spectral"`` is Tran et al.'s (2018) procedure: ``expected_fraction`` is the defender's bound
    epsilon on the poisoned share of a label, and within each label c (n_c rows) the
    ``round(removal * epsilon * n_c)`` rows whose representation (input of the last linear layer),
    centred on the label's mean, projects furthest on the label's top singular direction are flagged.
    Rows are ranked only against their own label. ``scores`` are the squared projections divided by
    the label's median (comparable across labels, but the flags never compare them).
    ``"loss"``: the ``round(removal * expected_fraction * N)`` rows with the highest cross-entropy under
    the model, e.g. a reference model the defender trained on a small trusted subset: a poisoned
    row (a triggered 3 labelled 0, a flipped label) looks wrong to it. Neither the model nor the data
    is modified.

    Taught in chapter 3.
    """
    check_model("model", model)
    check_batch("x", x, min_rows=2)
    check_labels("y", y, n=x.shape[0])
    check_choice("method", method, DETECT_METHODS)
    check_number("expected_fraction", expected_fraction, low=0.0, high=1.0, low_open=True)
    check_number("removal", removal, low=0.0, low_open=True)
    if method == "spectral":
        scores = _spectral_scores(penultimate_features(model, x), y)
        return Detection(_top_per_label(scores, y, removal * expected_fraction), scores)
    with eval_mode(model), torch.no_grad():
        scores = nn.functional.cross_entropy(model(x), y, reduction="none")
    k = min(x.shape[0], max(1, count_rows(removal * expected_fraction, x.shape[0])))
    flagged = torch.topk(scores, k).indices.sort().values
    return Detection(flagged, scores)


def detection_quality(flagged: torch.Tensor, poisoned: torch.Tensor) -> tuple[float, float]:
    """(precision, recall) of the flagged row indices against the truly poisoned ones.

    Taught in chapter 3.
    """
    flagged_set = set(flagged.tolist())
    truth = set(poisoned.tolist())
    hits = len(flagged_set & truth)
    precision = hits / len(flagged_set) if flagged_set else 0.0
    recall = hits / len(truth) if truth else 1.0
    return precision, recall


def quality_by_label(
    flagged: torch.Tensor, poisoned: torch.Tensor, y: torch.Tensor
) -> dict[int, tuple[int, int, int]]:
    """Per label of ``y``: (rows flagged, poisoned rows among them, poisoned rows of that label).

    Precision in label c is hits / flagged, recall hits / poisoned (no recall for a clean label).
    Taught in chapter 3.
    """
    check_labels("y", y)
    flags = torch.zeros(y.shape[0], dtype=torch.bool)
    truth = torch.zeros(y.shape[0], dtype=torch.bool)
    flags[flagged] = True
    truth[poisoned] = True
    return {
        int(c): (
            int((flags & (y == c)).sum()),
            int((flags & truth & (y == c)).sum()),
            int((truth & (y == c)).sum()),
        )
        for c in y.unique()
    }
