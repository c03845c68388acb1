"""Chapter 4's experiment: a small MLP trained on the digits by simulated workers, some Byzantine.

Pure functions: every setting is an argument (a frozen :class:`Recipe`) and nothing is cached.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from gdsec.aggregation.byzantine import CRAFTED_ATTACKS
from gdsec.aggregation.rules import AGGREGATORS
from gdsec.aggregation.simulate import Setting, Simulation, simulate_batch
from gdsec.data import Split
from gdsec.models import mlp
from gdsec.seeds import check_seeds
from gdsec.validation import check_choice, check_int, check_number, check_seed

__all__ = ["LABELS", "Recipe", "accuracy_table", "final_accuracy", "run_setting", "run_settings", "sweep"]

#: Short display names of the aggregation rules.
LABELS = {"mean": "mean", "coordinate_median": "median", "trimmed_mean": "trimmed mean", "krum": "Krum"}


@dataclass(frozen=True)
class Recipe:
    """How chapter 4's runs train: workers, MLP width, learning rate, rounds, per-worker batch, evaluation.

    Taught in chapter 4.
    """

    n_workers: int = 10
    hidden: int = 32
    lr: float = 0.3
    steps: int = 80
    batch_size: int = 4
    eval_every: int = 10

    def __post_init__(self) -> None:
        check_int("n_workers", self.n_workers, low=2)
        check_int("hidden", self.hidden, low=1)
        check_number("lr", self.lr, low=0.0, low_open=True)
        check_int("steps", self.steps, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_int("eval_every", self.eval_every, low=1)


Key = tuple[str, int, str]


def run_settings(
    split: Split, keys: Sequence[Key], *, recipe: Recipe = Recipe(), seeds: Sequence[int] = (0,)
) -> dict[Key, tuple[Simulation, ...]]:
    """Every ``(attack, f, aggregator)`` of ``keys`` for every seed, trained as one batch; one run per seed.

    Each run trains the chapter's MLP (initialised with its seed) on ``split`` with ``f`` of
    ``recipe.n_workers`` workers running ``attack``. Trimmed mean and Krum are told ``max(f, 1)``
    attackers: the true ``f``, except in the clean runs (``f = 0``), where they are told 1 so that they
    still trim or exclude something. With ``f = 0`` the attack is irrelevant. ``attack`` is one of
    ``CRAFTED_ATTACKS``. Each run equals :func:`run_setting` with its seed (up to floating-point rounding).

    Taught in chapter 4.
    """
    if not isinstance(split, Split):
        raise ValueError(f"split must be a gdsec.data.Split, got {type(split).__name__}")
    if not isinstance(recipe, Recipe):
        raise ValueError(f"recipe must be a Recipe, got {type(recipe).__name__}")
    seeds = check_seeds(seeds)
    if isinstance(keys, str) or not isinstance(keys, Sequence) or not keys:
        raise ValueError("keys must be a non-empty list of (attack, f, aggregator) tuples")
    for key in keys:
        if not isinstance(key, tuple) or len(key) != 3:
            raise ValueError(f"keys must hold (attack, f, aggregator) tuples, got {key!r}")
        check_choice("attack", key[0], CRAFTED_ATTACKS)
        check_int("f", key[1], low=0, high=recipe.n_workers - 1)
        check_choice("aggregator", key[2], AGGREGATORS)
    unique = list(dict.fromkeys(keys))
    n_classes = int(split.y_train.max()) + 1
    width = int(split.x_train[0].numel())
    models, settings = [], []
    for attack, f, aggregator in unique:
        for seed in seeds:
            models.append(mlp(width, n_classes, hidden=recipe.hidden, seed=seed))
            settings.append(Setting(aggregator, f, attack if f else "none", max(f, 1), None, seed))
    runs = simulate_batch(
        models, split.x_train, split.y_train, settings=settings, eval_data=(split.x_test, split.y_test),
        n_workers=recipe.n_workers, lr=recipe.lr, steps=recipe.steps, batch_size=recipe.batch_size,
        eval_every=recipe.eval_every,
    )
    count = len(seeds)
    return {key: tuple(runs[i * count : (i + 1) * count]) for i, key in enumerate(unique)}


def run_setting(
    split: Split, aggregator: str, f: int, attack: str, *, recipe: Recipe = Recipe(), seed: int = 0
) -> Simulation:
    """One run of :func:`run_settings`: the chapter's MLP with ``f`` workers running ``attack``.

    Taught in chapter 4.
    """
    check_seed(seed)
    return run_settings(split, [(attack, f, aggregator)], recipe=recipe, seeds=[seed])[attack, f, aggregator][0]


def sweep(
    split: Split,
    aggregators: Sequence[str],
    f_values: Sequence[int],
    attacks: Sequence[str],
    *,
    recipe: Recipe = Recipe(),
    seeds: Sequence[int] = (0,),
) -> dict[Key, tuple[Simulation, ...]]:
    """:func:`run_settings` for every (attack, f, aggregator); keys are ``(attack, f, aggregator)``.

    Values hold one run per seed. Each setting runs once: the clean runs (``f = 0``) of a rule are
    listed under every attack.

    Taught in chapter 4.
    """
    keys: list[Key] = []
    for attack in attacks:
        for f in f_values:
            keys += [("none" if f == 0 else attack, f, aggregator) for aggregator in aggregators]
    done = run_settings(split, keys, recipe=recipe, seeds=seeds)
    return {(attack, f, aggregator): done["none" if f == 0 else attack, f, aggregator]
            for attack in attacks for f in f_values for aggregator in aggregators}


def _check_runs(runs: object) -> list[Simulation]:
    """``runs`` as a non-empty list of ``Simulation``, or ``ValueError`` naming ``runs``."""
    if isinstance(runs, Simulation) or not isinstance(runs, Sequence) or not runs:
        raise ValueError("runs must be a non-empty sequence of Simulation (one per seed)")
    if not all(isinstance(run, Simulation) for run in runs):
        raise ValueError("runs must hold gdsec.aggregation.Simulation values")
    return list(runs)


def final_accuracy(runs: Sequence[Simulation]) -> torch.Tensor:
    """Each run's final test accuracy, one per seed; a diverged run counts as 0.

    Taught in chapter 4.
    """
    return torch.tensor([0.0 if run.diverged else run.accuracy[-1] for run in _check_runs(runs)])


def accuracy_table(runs: Sequence[Simulation]) -> tuple[list[int], torch.Tensor]:
    """The longest run's evaluation steps and the accuracies (runs x steps); a diverged run is 0 from then on.

    Taught in chapter 4.
    """
    runs = _check_runs(runs)
    steps = max((run.steps for run in runs), key=len)
    table = torch.zeros(len(runs), len(steps))
    for i, run in enumerate(runs):
        values = [0.0 if math.isnan(a) else a for a in run.accuracy]
        table[i, : len(values)] = torch.tensor(values)
        if run.diverged:
            table[i, len(values) - 1 :] = 0.0
    return steps, table
