"""Clean reference models: what an honest model trained on the auditor's trusted split looks like.

They judge the training labels (the loss scan of question 3), serve as the transfer surrogate of
question 4, and calibrate the thresholds of questions 3 and 5: several seeds show how far an
honest model's statistics spread, so an honest model stays "low" with margin.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from gdsec.audit.config import AuditConfig
from gdsec.data import Split
from gdsec.models import mlp
from gdsec.seeds import train_seeds
from gdsec.validation import check_int

__all__ = ["reference_models", "transfer_surrogate"]

_RECIPE = {"optimizer": "adam", "lr": 0.01}


def _shape(split: Split) -> tuple[int, int]:
    """(features per row, number of classes) of ``split``."""
    n_classes = int(max(split.y_train.max().item(), split.y_test.max().item())) + 1
    return int(split.x_test[0].numel()), max(n_classes, 2)


def reference_models(
    split: Split, *, n_seeds: int = 3, epochs: int = 40, seed: int = 0
) -> tuple[nn.Module, ...]:
    """``n_seeds`` small MLPs (seeds ``seed, seed + 1, ...``) trained at once on the trusted held-out split.

    Taught in chapter 10.
    """
    check_int("n_seeds", n_seeds, low=1)
    x, y = split.x_test, split.y_test
    n_features, n_classes = _shape(split)
    build = partial(mlp, n_features=n_features, n_classes=n_classes)
    trained = train_seeds(
        build,
        x,
        y,
        seeds=list(range(seed, seed + n_seeds)),
        **_RECIPE,
        epochs=epochs,
        batch_size=min(64, len(y)),
    )
    return tuple(trained)


def transfer_surrogate(split: Split, config: AuditConfig) -> nn.Module:
    """The transfer surrogate: ``config.surrogate``, else the first clean reference (trained on the
    trusted split). Used in chapter 10."""
    if config.surrogate is not None:
        return config.surrogate
    references = config.references or reference_models(split, n_seeds=1, seed=config.seed)
    return references[0]
