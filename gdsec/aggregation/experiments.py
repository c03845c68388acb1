"""Chapter 4's experiment: a small MLP trained on the digits by simulated workers, some Byzantine.

Pure functions: every setting is an argument (a frozen :class:`Recipe`) and nothing is cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gdsec.aggregation.byzantine import CRAFTED_ATTACKS
from gdsec.aggregation.rules import AGGREGATORS
from gdsec.aggregation.simulate import Simulation, simulate
from gdsec.data import Split
from gdsec.models import mlp
from gdsec.validation import check_choice, check_int, check_number

__all__ = ["LABELS", "Recipe", "run_setting", "sweep"]

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


def run_setting(
    split: Split, aggregator: str, f: int, attack: str, *, recipe: Recipe = Recipe(), seed: int = 0
) -> Simulation:
    """Train the chapter's MLP on ``split`` with ``f`` of ``recipe.n_workers`` workers running ``attack``.

    Robust rules are told the true ``f`` (at least 1, so that they always trim or exclude something).
    With ``f = 0`` the attack is irrelevant and the run is the clean one. ``attack`` is one of
    ``CRAFTED_ATTACKS``.

    Taught in chapter 4.
    """
    if not isinstance(split, Split):
        raise ValueError(f"split must be a gdsec.data.Split, got {type(split).__name__}")
    if not isinstance(recipe, Recipe):
        raise ValueError(f"recipe must be a Recipe, got {type(recipe).__name__}")
    check_choice("aggregator", aggregator, AGGREGATORS)
    check_int("f", f, low=0, high=recipe.n_workers - 1)
    check_choice("attack", attack, CRAFTED_ATTACKS)
    n_classes = int(split.y_train.max()) + 1
    model = mlp(int(split.x_train[0].numel()), n_classes, hidden=recipe.hidden, seed=seed)
    return simulate(
        model, split.x_train, split.y_train, eval_data=(split.x_test, split.y_test), n_workers=recipe.n_workers,
        f=f, attack=attack if f else "none", aggregator=aggregator, aggregator_f=max(f, 1),
        lr=recipe.lr, steps=recipe.steps, batch_size=recipe.batch_size, eval_every=recipe.eval_every, seed=seed,
    )


def sweep(
    split: Split,
    aggregators: Sequence[str],
    f_values: Sequence[int],
    attacks: Sequence[str],
    *,
    recipe: Recipe = Recipe(),
    seed: int = 0,
) -> dict[tuple[str, int, str], Simulation]:
    """:func:`run_setting` for every (attack, f, aggregator); keys are ``(attack, f, aggregator)``.

    Each setting runs once: the clean run (``f = 0``) of a rule is listed under every attack.

    Taught in chapter 4.
    """
    runs: dict[tuple[str, int, str], Simulation] = {}
    clean: dict[str, Simulation] = {}
    for attack in attacks:
        for f in f_values:
            for aggregator in aggregators:
                if f == 0:
                    if aggregator not in clean:
                        clean[aggregator] = run_setting(split, aggregator, 0, "none", recipe=recipe, seed=seed)
                    runs[attack, 0, aggregator] = clean[aggregator]
                else:
                    runs[attack, f, aggregator] = run_setting(split, aggregator, f, attack, recipe=recipe, seed=seed)
    return runs
