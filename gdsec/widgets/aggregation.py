"""Chapter 4 explorer: attack x aggregation rule x number of Byzantine workers -> test-accuracy curve.

The explorer only lays out runs it is handed: the chapter computes its sweep over several seeds with
:func:`gdsec.aggregation.experiments.sweep` and passes it in; each view draws the mean over the seeds
and their range. In a live kernel, a ``compute`` function (for example one that calls
``experiments.run_settings`` for the chapter's seeds) runs the settings the sweep does not hold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from gdsec.aggregation import AGGREGATORS, CRAFTED_ATTACKS, Simulation, max_tolerated
from gdsec.aggregation.experiments import LABELS, accuracy_table
from gdsec.plotting import PALETTE
from gdsec.validation import check_choice, check_int
from gdsec.widgets.core import explorer

__all__ = ["F_VALUES", "SHOWN_ATTACKS", "aggregation_explorer"]

#: Numbers of malicious workers the precomputed face offers.
F_VALUES = (1, 3)
#: Attacks (of ``CRAFTED_ATTACKS``) the precomputed face offers: the chapter's headline, "a little
#: is enough", first.
SHOWN_ATTACKS = ("alie", "sign_flip")

Runs = Mapping[tuple[str, int, str], Sequence[Simulation]]


def _tolerated(aggregator: str, n_workers: int) -> int:
    """Attackers a rule can be run against: any number for the mean, ``max_tolerated`` for the others."""
    return n_workers - 1 if aggregator == "mean" else max_tolerated(aggregator, n_workers)


def _draw(
    clean: Sequence[Simulation],
    runs: Sequence[Simulation] | None,
    aggregator: str,
    f: int,
    attack: str,
    n_workers: int,
) -> Figure:
    """Mean accuracy over training (band: range over seeds) for one rule and f, against the clean mean."""
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    steps, table = accuracy_table(clean)
    ax.plot(
        steps,
        table.mean(0),
        color=PALETTE["black"],
        linestyle="--",
        linewidth=1.2,
        label=f"mean, no attackers ({len(clean)} seeds)",
    )
    if runs is None:
        ax.text(
            0.5,
            0.5,
            f"{LABELS[aggregator]} cannot tolerate f = {f}\n(needs n_workers > "
            f"{'2f + 2' if aggregator == 'krum' else '2f'})",
            transform=ax.transAxes,
            ha="center",
        )
    else:
        steps, table = accuracy_table(runs)
        note = (
            f", {sum(r.diverged for r in runs)} diverged" if any(r.diverged for r in runs) else ""
        )
        ax.fill_between(
            steps,
            table.min(0).values,
            table.max(0).values,
            color=PALETTE["vermillion"],
            alpha=0.25,
            linewidth=0,
        )
        ax.plot(
            steps,
            table.mean(0),
            color=PALETTE["vermillion"],
            marker="o",
            markersize=3,
            label=f"{LABELS[aggregator]}, {f} of {n_workers} workers '{attack}' ({len(runs)} seeds{note})",
        )
    ax.set_ylim(0, 1)
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy (fraction)")
    ax.set_title(f"{LABELS[aggregator]} against {f} Byzantine worker(s): '{attack}'")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def aggregation_explorer(
    runs: Runs,
    *,
    attacks: Sequence[str] = SHOWN_ATTACKS,
    n_workers: int = 10,
    f_values: Sequence[int] = F_VALUES,
    compute: Callable[[str, int, str], Sequence[Simulation]] | None = None,
    live: bool | None = None,
) -> widgets.VBox:
    """Explorer: attack x aggregator x number of malicious workers -> accuracy curve, against the clean mean.

    ``runs`` maps ``(attack, f, aggregator)`` to the runs of that setting, one per seed (each a
    :class:`~gdsec.aggregation.Simulation` with ``n_workers`` workers), and must hold
    ``(attacks[0], 0, "mean")`` and every rule of ``AGGREGATORS`` at every tolerated ``f`` of
    ``f_values`` for every attack (the precomputed views). The first attack is the initial view. In a
    live kernel the slider runs from 0 to 4 and ``compute(aggregator, f, attack)`` runs the settings
    ``runs`` lacks (without it, only ``f_values`` are offered).

    Taught in chapter 4.
    """
    if isinstance(attacks, str) or not attacks:
        raise ValueError("attacks must list at least one attack of CRAFTED_ATTACKS")
    attacks = [check_choice("attacks", attack, CRAFTED_ATTACKS) for attack in attacks]
    check_int("n_workers", n_workers, low=2)
    if compute is not None and not callable(compute):
        raise ValueError("compute must be a callable (aggregator, f, attack) -> runs, or None")
    grid = [check_int("f_values", f, low=0, high=n_workers - 1) for f in f_values]
    known = {key: tuple(value) for key, value in runs.items()}
    needed = [(attacks[0], 0, "mean")] + [
        (attack, f, rule)
        for attack in attacks
        for rule in AGGREGATORS
        for f in grid
        if f <= _tolerated(rule, n_workers)
    ]
    missing = [key for key in needed if key not in known]
    if missing:
        raise ValueError(f"runs must hold every setting of the grid; missing {missing}")
    if any(not value for value in known.values()):
        raise ValueError("runs must hold at least one run (seed) per setting")

    def lookup(attack: str, aggregator: str, f: int) -> tuple[Simulation, ...]:
        key = (attack, f, aggregator)
        if key not in known:
            if compute is None:
                raise ValueError(f"runs has no run for {key} and no compute function was given")
            known[key] = tuple(compute(aggregator, f, attack))
        return known[key]

    def render(attack: str, aggregator: str, f: float) -> Figure:
        f = int(round(f))
        chosen = lookup(attack, aggregator, f) if f <= _tolerated(aggregator, n_workers) else None
        return _draw(lookup(attacks[0], "mean", 0), chosen, aggregator, f, attack, n_workers)

    return explorer(
        render,
        {"attack": attacks, "aggregator": list(AGGREGATORS), "f": grid},
        live=live,
        live_ranges={"f": (0, 4, 1)} if compute is not None else None,
        descriptions={"attack": "attack", "aggregator": "aggregator", "f": "malicious workers"},
        title="Byzantine workers against four aggregation rules",
    )
