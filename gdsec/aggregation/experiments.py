"""Chapter 4's experiment: a small MLP trained on the digits by simulated workers, some Byzantine.

Pure functions: every setting is an argument (a frozen ``SimulationRecipe`` and the MLP's width) and
nothing is cached.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from gdsec.aggregation.byzantine import CRAFTED_ATTACKS
from gdsec.aggregation.rules import AGGREGATORS
from gdsec.aggregation.settings import Setting, SimulationRecipe
from gdsec.aggregation.simulation import Simulation, simulate_batch
from gdsec.data import Split
from gdsec.models import mlp
from gdsec.seeds import check_seeds
from gdsec.validation import check_choice, check_int

__all__ = ["LABELS", "accuracy_table", "final_accuracy", "run_settings", "sweep"]

#: Short display names of the aggregation rules.
LABELS = {
    "mean": "mean",
    "coordinate_median": "median",
    "trimmed_mean": "trimmed mean",
    "krum": "Krum",
}


Key = tuple[str, int, str]


def run_settings(
    split: Split,
    keys: Sequence[Key],
    *,
    recipe: SimulationRecipe,
    hidden: int = 32,
    seeds: Sequence[int] = (0,),
) -> dict[Key, tuple[Simulation, ...]]:
    """Every ``(attack, f, aggregator)`` of ``keys`` for every seed, trained as one batch; one run per seed.

    Each run trains the chapter's MLP (``hidden`` units, initialised with its seed) on ``split`` with ``f`` of
    ``recipe.n_workers`` workers running ``attack``. Trimmed mean and Krum are told ``max(f, 1)``
    attackers: the true ``f``, except in the clean runs (``f = 0``), where they are told 1 so that they
    still trim or exclude something. With ``f = 0`` the attack is irrelevant. ``attack`` is
    ``"none"`` or one of ``CRAFTED_ATTACKS``. Each run equals the same run alone (up to floating-point rounding).

    Taught in chapter 4.
    """
    if not isinstance(split, Split):
        raise ValueError(f"split must be a gdsec.data.Split, got {type(split).__name__}")
    if not isinstance(recipe, SimulationRecipe):
        raise ValueError(f"recipe must be a SimulationRecipe, got {type(recipe).__name__}")
    check_int("hidden", hidden, low=1)
    seeds = check_seeds(seeds)
    if isinstance(keys, str) or not isinstance(keys, Sequence) or not keys:
        raise ValueError("keys must be a non-empty list of (attack, f, aggregator) tuples")
    for key in keys:
        if not isinstance(key, tuple) or len(key) != 3:
            raise ValueError(f"keys must hold (attack, f, aggregator) tuples, got {key!r}")
        check_choice("attack", key[0], ("none", *CRAFTED_ATTACKS))
        check_int("f", key[1], low=0, high=recipe.n_workers - 1)
        check_choice("aggregator", key[2], AGGREGATORS)
    unique = list(dict.fromkeys(keys))
    n_classes = int(split.y_train.max()) + 1
    width = int(split.x_train[0].numel())
    models, settings = [], []
    for attack, f, aggregator in unique:
        for seed in seeds:
            models.append(mlp(width, n_classes, hidden=hidden, seed=seed))
            settings.append(Setting(aggregator, f, attack if f else "none", max(f, 1), None, seed))
    runs = simulate_batch(
        models, split.x_train, split.y_train, settings=settings, recipe=recipe,
        eval_data=(split.x_test, split.y_test),
    )  # fmt: skip
    count = len(seeds)
    return {key: tuple(runs[i * count : (i + 1) * count]) for i, key in enumerate(unique)}


def sweep(
    split: Split,
    aggregators: Sequence[str],
    f_values: Sequence[int],
    attacks: Sequence[str],
    *,
    recipe: SimulationRecipe,
    hidden: int = 32,
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
    done = run_settings(split, keys, recipe=recipe, hidden=hidden, seeds=seeds)
    return {
        (attack, f, aggregator): done["none" if f == 0 else attack, f, aggregator]
        for attack in attacks
        for f in f_values
        for aggregator in aggregators
    }


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
