"""What a simulated data-parallel run is: its :class:`Setting` and the :class:`SimulationRecipe` it trains by."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from gdsec.aggregation.byzantine import BYZANTINE_ATTACKS
from gdsec.aggregation.rules import AGGREGATORS, check_f
from gdsec.models import check_same_architecture
from gdsec.validation import (
    check_batch,
    check_choice,
    check_int,
    check_labels,
    check_number,
    check_seed,
    check_unit_tensor,
)

__all__ = ["Setting", "SimulationRecipe", "check_eval_data", "check_setting"]


class Setting(NamedTuple):
    """One run of ``simulate_batch``: rule, attackers, attack, what the rule is told, clipping, seed.

    ``aggregator_f`` (default ``f``) is the number of attackers trimmed mean and Krum are told to expect.

    Taught in chapter 4.
    """

    aggregator: str = "mean"
    f: int = 0
    attack: str = "none"
    aggregator_f: int | None = None
    max_norm: float | None = None
    seed: int = 0


@dataclass(frozen=True)
class SimulationRecipe:
    """How simulated runs train: workers, learning rate, rounds, per-worker batch, evaluation interval.

    The defaults are chapter 4's: 10 workers, 80 rounds at lr 0.3, 4 rows per worker per round,
    test accuracy every 10 rounds.
    Taught in chapter 4.
    """

    n_workers: int = 10
    lr: float = 0.3
    steps: int = 80
    batch_size: int = 4
    eval_every: int = 10

    def __post_init__(self) -> None:
        check_int("n_workers", self.n_workers, low=1)
        check_number("lr", self.lr, low=0.0, low_open=True)
        check_int("steps", self.steps, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_int("eval_every", self.eval_every, low=1)


def check_setting(setting: object, n_workers: int) -> Setting:
    """``setting`` with ``aggregator_f`` filled in if it is a valid :class:`Setting` for ``n_workers``.

    Otherwise ``ValueError`` naming the field.
    Used in chapter 4.
    """
    if not isinstance(setting, Setting):
        raise ValueError(
            f"settings must hold gdsec.aggregation.Setting values, got {type(setting).__name__}"
        )
    check_choice("aggregator", setting.aggregator, AGGREGATORS)
    check_int("f", setting.f, low=0, high=n_workers - 1)
    check_choice("attack", setting.attack, BYZANTINE_ATTACKS)
    told = setting.f
    if setting.aggregator_f is not None:
        told = check_int("aggregator_f", setting.aggregator_f, low=0)
    if setting.aggregator in ("trimmed_mean", "krum"):
        check_f(told, n_workers, setting.aggregator)
    if setting.max_norm is not None:
        check_number("max_norm", setting.max_norm, low=0.0, low_open=True)
    check_seed(setting.seed)
    return setting._replace(aggregator_f=told)


def check_eval_data(eval_data: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``eval_data`` if it is a tuple (x_test, y_test) of a batch and its labels.

    Used in chapter 4.
    """
    if not isinstance(eval_data, tuple) or len(eval_data) != 2:
        raise ValueError("eval_data must be a tuple (x_test, y_test)")
    check_batch("eval_data[0]", eval_data[0])
    check_labels("eval_data[1]", eval_data[1], n=eval_data[0].shape[0])
    return eval_data


def _check_simulation_args(
    models: object,
    x: object,
    y: object,
    settings: object,
    recipe: object,
    scale: object,
    attacker_data: object,
) -> tuple[list[nn.Module], list[Setting]]:
    """Validate ``simulate_batch``'s arguments; return the models and the completed settings."""
    models = check_same_architecture("models", models)
    if (
        isinstance(settings, Setting)
        or not isinstance(settings, Sequence)
        or len(settings) != len(models)
    ):
        raise ValueError("settings must be a list of Setting, one per model")
    if not isinstance(recipe, SimulationRecipe):
        raise ValueError(f"recipe must be a SimulationRecipe, got {type(recipe).__name__}")
    check_unit_tensor("x", x, min_dim=2)
    check_labels("y", y, n=x.shape[0])
    check_int("n_workers", recipe.n_workers, low=1, high=x.shape[0])
    runs = [check_setting(s, recipe.n_workers) for s in settings]
    if scale is not None:
        check_number("scale", scale, low=0.0)
    if any(r.attack == "targeted" and r.f > 0 for r in runs) and attacker_data is None:
        raise ValueError(
            "attacker_data must be given (inputs, wanted labels) for attack='targeted'"
        )
    return models, runs
