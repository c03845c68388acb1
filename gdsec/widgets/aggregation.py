"""Chapter 4 explorer: number of Byzantine workers x aggregation rule -> test-accuracy curve.

The explorer only lays out runs it is handed: the chapter computes its sweep with
:func:`gdsec.aggregation.experiments.sweep` and passes it in. In a live kernel, a ``compute``
function (for example ``functools.partial(experiments.run_setting, split, recipe=recipe)``) runs the
settings the sweep does not hold.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from gdsec.aggregation import AGGREGATORS, CRAFTED_ATTACKS, Simulation, max_tolerated
from gdsec.aggregation.experiments import LABELS
from gdsec.plotting import PALETTE
from gdsec.validation import check_choice, check_int
from gdsec.widgets.core import explorer

__all__ = ["F_VALUES", "aggregation_explorer"]

#: Numbers of malicious workers the precomputed face offers.
F_VALUES = (0, 1, 3)

Runs = Mapping[tuple[str, int, str], Simulation]


def _tolerated(aggregator: str, n_workers: int) -> int:
    """Attackers a rule can be run against: any number for the mean, ``max_tolerated`` for the others."""
    return n_workers - 1 if aggregator == "mean" else max_tolerated(aggregator, n_workers)


def _draw(clean: Simulation, run: Simulation | None, aggregator: str, f: int, attack: str, n_workers: int) -> Figure:
    """Accuracy over training for one rule and one number of attackers, against the clean mean."""
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    ax.plot(clean.steps, clean.accuracy, color=PALETTE["black"], linestyle="--", linewidth=1.2,
            label="mean, no attackers")
    if run is None:
        ax.text(0.5, 0.5, f"{LABELS[aggregator]} cannot tolerate f = {f}\n(needs n_workers > "
                f"{'2f + 2' if aggregator == 'krum' else '2f'})", transform=ax.transAxes, ha="center")
    else:
        accuracy = [0.0 if math.isnan(a) else a for a in run.accuracy]
        note = " (diverged)" if run.diverged else ""
        ax.plot(run.steps, accuracy, color=PALETTE["vermillion"], marker="o", markersize=3,
                label=f"{LABELS[aggregator]}, {f} of {n_workers} workers '{attack}'{note}")
    ax.set_ylim(0, 1)
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy (fraction)")
    ax.set_title(f"{LABELS[aggregator]} against {f} Byzantine worker(s)")
    ax.legend(loc="best", fontsize=8)
    return fig


def aggregation_explorer(
    runs: Runs,
    *,
    attack: str = "sign_flip",
    n_workers: int = 10,
    f_values: Sequence[int] = F_VALUES,
    compute: Callable[[str, int, str], Simulation] | None = None,
    live: bool | None = None,
) -> widgets.VBox:
    """Explorer: aggregator x number of malicious workers -> accuracy curve, against the clean mean.

    ``runs`` maps ``(attack, f, aggregator)`` to a :class:`~gdsec.aggregation.Simulation` with
    ``n_workers`` workers, and must hold ``(attack, 0, "mean")`` and every rule of ``AGGREGATORS`` at
    every tolerated ``f`` of ``f_values`` (the precomputed views). In a live kernel the slider runs
    from 0 to 4 and ``compute(aggregator, f, attack)`` runs settings ``runs`` lacks (without it, only
    ``f_values`` are offered).

    Taught in chapter 4.
    """
    check_choice("attack", attack, CRAFTED_ATTACKS)
    check_int("n_workers", n_workers, low=2)
    if compute is not None and not callable(compute):
        raise ValueError("compute must be a callable (aggregator, f, attack) -> Simulation, or None")
    grid = [check_int("f_values", f, low=0, high=n_workers - 1) for f in f_values]
    known = dict(runs)
    needed = [("mean", 0)] + [(rule, f) for rule in AGGREGATORS for f in grid if f <= _tolerated(rule, n_workers)]
    missing = [(attack, f, rule) for rule, f in needed if (attack, f, rule) not in known]
    if missing:
        raise ValueError(f"runs must hold every setting of the grid; missing {missing}")

    def lookup(aggregator: str, f: int) -> Simulation:
        key = (attack, f, aggregator)
        if key not in known:
            if compute is None:
                raise ValueError(f"runs has no run for {key} and no compute function was given")
            known[key] = compute(aggregator, f, attack)
        return known[key]

    def render(aggregator: str, f: float) -> Figure:
        f = int(round(f))
        run = lookup(aggregator, f) if f <= _tolerated(aggregator, n_workers) else None
        return _draw(lookup("mean", 0), run, aggregator, f, attack, n_workers)

    return explorer(
        render,
        {"aggregator": list(AGGREGATORS), "f": grid},
        live=live,
        live_ranges={"f": (0, 4, 1)} if compute is not None else None,
        descriptions={"aggregator": "aggregator", "f": "malicious workers"},
        title=f"Byzantine workers ('{attack}') against four aggregation rules",
    )
