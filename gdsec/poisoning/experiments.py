"""Chapter 3's experiment: a small MLP trained on the digits after label flipping or a backdoor.

Pure functions: every setting is an argument (a frozen :class:`PoisoningRecipe`), nothing is cached, and
every result holds its own freshly trained model.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from gdsec.data import Split
from gdsec.models import mlp
from gdsec.poisoning.backdoor import add_backdoor, attack_success_rate
from gdsec.poisoning.labels import flip_labels
from gdsec.seeds import check_seeds, train_seeds
from gdsec.train import accuracy, train
from gdsec.validation import check_choice, check_fraction, check_int, check_number

__all__ = [
    "POISON_KINDS",
    "Measurement",
    "PoisoningRecipe",
    "accuracy_curve",
    "measure",
    "measure_seeds",
]

#: The two poisoning attacks of chapter 3's sweeps.
POISON_KINDS = ("label flip", "backdoor")


@dataclass(frozen=True)
class PoisoningRecipe:
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


def measure(
    split: Split,
    kind: str,
    fraction: float,
    *,
    recipe: PoisoningRecipe = PoisoningRecipe(),
    seed: int = 0,
) -> Measurement:
    """Poison ``fraction`` of ``split``'s training rows (``kind`` of ``POISON_KINDS``), train the MLP, measure it.

    Label flips draw with ``seed``; the backdoor relabels to ``recipe.target``. The model (seeded
    with ``seed``) is new on every call, so callers may change it freely. A zero fraction gives the
    same clean run for both kinds.

    Taught in chapter 3.
    """
    _check_split_recipe(split, recipe)
    x_train, y_train, index = _poison(split, kind, fraction, recipe, seed)
    n_classes = int(split.y_train.max()) + 1
    model = mlp(int(x_train[0].numel()), n_classes, hidden=recipe.hidden, seed=seed)
    train(
        model,
        x_train,
        y_train,
        lr=recipe.lr,
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        seed=seed,
        progress=False,
    )
    return _measurement(split, model, x_train, y_train, index, recipe)


def _check_split_recipe(split: Split, recipe: PoisoningRecipe) -> None:
    """Raise ``ValueError`` unless ``split`` is a Split and ``recipe`` a PoisoningRecipe."""
    if not isinstance(split, Split):
        raise ValueError(f"split must be a gdsec.data.Split, got {type(split).__name__}")
    if not isinstance(recipe, PoisoningRecipe):
        raise ValueError(f"recipe must be a PoisoningRecipe, got {type(recipe).__name__}")


def _poison(
    split: Split, kind: str, fraction: float, recipe: PoisoningRecipe, seed: int
) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, index): ``split``'s training rows with ``fraction`` of them poisoned by ``kind``."""
    check_choice("kind", kind, POISON_KINDS)
    check_fraction("fraction", fraction)
    if kind == "label flip":
        n_classes = int(split.y_train.max()) + 1
        y_train = flip_labels(split.y_train, fraction, n_classes=n_classes, seed=seed)
        return split.x_train, y_train, torch.nonzero(y_train != split.y_train).flatten()
    return add_backdoor(
        split.x_train, split.y_train, target=recipe.target, fraction=fraction, seed=seed
    )


def _measurement(
    split: Split,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    index: torch.Tensor,
    recipe: PoisoningRecipe,
) -> Measurement:
    """The Measurement of one trained victim on ``split``'s test rows."""
    clean = accuracy(model, split.x_test, split.y_test)
    success = attack_success_rate(model, split.x_test, split.y_test, target=recipe.target)
    return Measurement(clean, success, model, x, y, index, recipe.target)


def measure_seeds(
    split: Split,
    runs: Sequence[tuple[str, float, int]],
    *,
    recipe: PoisoningRecipe = PoisoningRecipe(),
) -> list[Measurement]:
    """``measure(split, kind, fraction, recipe=recipe, seed=seed)`` for every ``(kind, fraction, seed)`` of ``runs``.

    All the victims train together as one batched model (``gdsec.seeds.train_seeds``), each exactly as
    ``measure`` trains it, so the seeds of ``runs`` must be distinct (one independent run each).
    Taught in chapter 3.
    """
    _check_split_recipe(split, recipe)
    if (
        not isinstance(runs, Sequence)
        or not runs
        or not all(isinstance(r, tuple) and len(r) == 3 for r in runs)
    ):
        raise ValueError("runs must be a non-empty list of (kind, fraction, seed) tuples")
    seeds = check_seeds([seed for _, _, seed in runs])
    poisoned = [_poison(split, kind, fraction, recipe, seed) for kind, fraction, seed in runs]
    n_classes = int(split.y_train.max()) + 1
    victims = train_seeds(
        lambda seed: mlp(int(split.x_train[0].numel()), n_classes, hidden=recipe.hidden, seed=seed),
        [p[0] for p in poisoned],
        [p[1] for p in poisoned],
        seeds=seeds,
        lr=recipe.lr,
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
    )
    return [_measurement(split, m, *p, recipe) for m, p in zip(victims, poisoned, strict=True)]


def accuracy_curve(
    split: Split,
    fractions: Sequence[float],
    *,
    seeds: Sequence[int],
    checkpoints: Sequence[int],
    recipe: PoisoningRecipe = PoisoningRecipe(),
) -> torch.Tensor:
    """Test accuracy (runs x checkpoints) of victims trained on labels flipped at ``fractions[i]`` with ``seeds[i]``.

    Run i flips its labels and seeds its MLP and mini-batches with ``seeds[i]``; all runs train together
    (``gdsec.seeds.train_seeds``) with ``recipe``'s width, learning rate and batch size, and are measured
    after each of the increasing epoch counts ``checkpoints`` (``recipe.epochs`` is ignored). Training
    continues from checkpoint to checkpoint; plain SGD keeps no state, so only the mini-batch order
    restarts (each segment draws its orders afresh from the run's seed).
    Taught in chapter 3.
    """
    _check_split_recipe(split, recipe)
    seeds = check_seeds(seeds)
    if (
        isinstance(fractions, str)
        or not isinstance(fractions, Sequence)
        or len(fractions) != len(seeds)
    ):
        raise ValueError(f"fractions must hold one label-flip fraction per seed ({len(seeds)})")
    if (
        not checkpoints
        or any(not isinstance(c, int) or c < 1 for c in checkpoints)
        or list(checkpoints) != sorted(set(checkpoints))
    ):
        raise ValueError(f"checkpoints must be increasing epoch counts >= 1, got {checkpoints!r}")
    labels = [
        _poison(split, "label flip", f, recipe, s)[1] for f, s in zip(fractions, seeds, strict=True)
    ]
    n_classes = int(split.y_train.max()) + 1
    done: dict[int, nn.Module] = {}
    curve = torch.zeros(len(seeds), len(checkpoints))
    trained = 0
    for j, epochs in enumerate(checkpoints):
        victims = train_seeds(
            (lambda seed, done=done: copy.deepcopy(done[seed]))
            if done
            else (
                lambda seed: mlp(
                    int(split.x_train[0].numel()), n_classes, hidden=recipe.hidden, seed=seed
                )
            ),
            split.x_train,
            labels,
            seeds=seeds,
            lr=recipe.lr,
            epochs=epochs - trained,
            batch_size=recipe.batch_size,
        )
        trained, done = epochs, dict(zip(seeds, victims, strict=True))
        curve[:, j] = torch.tensor([accuracy(m, split.x_test, split.y_test) for m in victims])
    return curve
