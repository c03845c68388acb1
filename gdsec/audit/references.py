"""Clean reference models: what an honest model trained on the auditor's trusted split looks like.

They judge the training labels (the loss scan of question 3), serve as the transfer surrogate of
question 4, and calibrate the thresholds of questions 3 and 5: several seeds show how far an
honest model's statistics spread, so an honest model stays "low" with margin.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from gdsec.data import Split
from gdsec.models import mlp
from gdsec.seeds import train_seeds
from gdsec.train import train
from gdsec.validation import check_int

__all__ = ["reference_model", "reference_models"]

_RECIPE = {"optimizer": "adam", "lr": 0.01}


def _shape(data: Split) -> tuple[int, int]:
    """(features per row, number of classes) of ``data``."""
    n_classes = int(max(data.y_train.max().item(), data.y_test.max().item())) + 1
    return int(data.x_test[0].numel()), max(n_classes, 2)


def reference_model(data: Split, *, epochs: int = 40, seed: int = 0) -> nn.Module:
    """A small MLP the auditor trains on the trusted held-out split, to judge the training labels.

    Taught in chapter 10.
    """
    x, y = data.x_test, data.y_test
    n_features, n_classes = _shape(data)
    model = mlp(n_features=n_features, n_classes=n_classes, seed=seed)
    train(model, x, y, **_RECIPE, epochs=epochs, batch_size=min(64, len(y)), seed=seed, progress=False)
    return model.eval()


def reference_models(data: Split, *, seeds: int = 3, epochs: int = 40, seed: int = 0) -> tuple[nn.Module, ...]:
    """``seeds`` reference models (seeds ``seed, seed + 1, ...``) trained at once; the first is ``reference_model``.

    Taught in chapter 10.
    """
    check_int("seeds", seeds, low=1)
    x, y = data.x_test, data.y_test
    n_features, n_classes = _shape(data)
    build = partial(mlp, n_features=n_features, n_classes=n_classes)
    trained = train_seeds(
        build, x, y, seeds=list(range(seed, seed + seeds)), **_RECIPE, epochs=epochs, batch_size=min(64, len(y))
    )
    return tuple(trained)
