"""Chapter 3's experiment: a small MLP trained on the digits after label flipping or a backdoor.

Pure functions: every setting is an argument (a frozen :class:`Recipe`), nothing is cached, and
every result holds its own freshly trained model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from gdsec.data import Split
from gdsec.models import mlp
from gdsec.poisoning.backdoor import add_backdoor, attack_success_rate
from gdsec.poisoning.labels import flip_labels
from gdsec.train import accuracy, train
from gdsec.validation import check_choice, check_fraction, check_int, check_number

__all__ = ["KINDS", "Measurement", "Recipe", "measure"]

#: The two poisoning attacks of chapter 3's sweeps.
KINDS = ("label flip", "backdoor")


@dataclass(frozen=True)
class Recipe:
    """How the victim is trained: MLP width, SGD learning rate, epochs, batch size; the backdoor target.

    Taught in chapter 3.
    """

    hidden: int = 32
    lr: float = 0.1
    epochs: int = 15
    batch_size: int = 32
    target: int = 0

    def __post_init__(self) -> None:
        check_int("hidden", self.hidden, low=1)
        check_number("lr", self.lr, low=0.0, low_open=True)
        check_int("epochs", self.epochs, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_int("target", self.target, low=0)


class Measurement(NamedTuple):
    """One poisoned training run: clean test accuracy, backdoor success, the model and the poisoned data.

    ``index`` holds the poisoned rows; ``target`` is the backdoor's target class.

    Taught in chapter 3.
    """

    clean_accuracy: float
    attack_success: float
    model: nn.Module
    x_train: torch.Tensor
    y_train: torch.Tensor
    index: torch.Tensor
    target: int


def measure(split: Split, kind: str, fraction: float, *, recipe: Recipe = Recipe(), seed: int = 0) -> Measurement:
    """Poison ``fraction`` of ``split``'s training rows (``kind`` of ``KINDS``), train the MLP, measure it.

    Label flips draw with ``seed``; the backdoor relabels to ``recipe.target``. The model (seeded
    with ``seed``) is new on every call, so callers may change it freely. A zero fraction gives the
    same clean run for both kinds.

    Taught in chapter 3.
    """
    if not isinstance(split, Split):
        raise ValueError(f"split must be a gdsec.data.Split, got {type(split).__name__}")
    check_choice("kind", kind, KINDS)
    check_fraction("fraction", fraction)
    if not isinstance(recipe, Recipe):
        raise ValueError(f"recipe must be a Recipe, got {type(recipe).__name__}")
    n_classes = int(split.y_train.max()) + 1
    if kind == "label flip":
        x_train = split.x_train
        y_train = flip_labels(split.y_train, fraction, n_classes=n_classes, seed=seed)
        index = torch.nonzero(y_train != split.y_train).flatten()
    else:
        x_train, y_train, index = add_backdoor(
            split.x_train, split.y_train, target=recipe.target, fraction=fraction, seed=seed
        )
    model = mlp(int(x_train[0].numel()), n_classes, hidden=recipe.hidden, seed=seed)
    train(model, x_train, y_train, lr=recipe.lr, epochs=recipe.epochs, batch_size=recipe.batch_size,
          seed=seed, progress=False)
    clean = accuracy(model, split.x_test, split.y_test)
    success = attack_success_rate(model, split.x_test, split.y_test, target=recipe.target)
    return Measurement(clean, success, model, x_train, y_train, index, recipe.target)

