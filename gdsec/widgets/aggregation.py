"""Chapter 4 explorer: number of Byzantine workers x aggregation rule -> test-accuracy curve.

:func:`run_setting` is the one experiment behind both the chapter's table and the explorer: a small
MLP trained on the digits by ``N_WORKERS`` simulated workers (``gdsec.aggregation.simulate``). It is
cached, so the explorer reuses the runs the table already paid for.
"""

from __future__ import annotations

import math
from functools import cache, lru_cache

import ipywidgets as widgets
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from gdsec import aggregation, data, models
from gdsec.plotting import PALETTE
from gdsec.validation import check_choice, check_int
from gdsec.widgets.core import explorer

__all__ = ["N_WORKERS", "SETTINGS", "aggregation_explorer", "clear_cache", "run_setting"]

#: Workers in every simulated run of chapter 4.
N_WORKERS = 10
#: Training settings shared by the table and the explorer (a small MLP, noisy mini-batches).
SETTINGS = {"lr": 0.3, "steps": 80, "batch_size": 4, "eval_every": 10, "hidden": 32}
LABELS = {"mean": "mean", "coordinate_median": "median", "trimmed_mean": "trimmed mean", "krum": "Krum"}


@cache
def _digits() -> data.Split:
    return data.load_digits()


def run_setting(aggregator: str, f: int, attack: str, seed: int = 0) -> aggregation.Simulation:
    """Train the chapter's MLP with ``f`` of ``N_WORKERS`` workers running ``attack``; cached per setting.

    Robust rules are told the true ``f`` (at least 1, so that they always trim or exclude something).
    With ``f = 0`` the attack is irrelevant, so every attack shares one clean run per rule.
    """
    check_choice("aggregator", aggregator, aggregation.AGGREGATORS)
    check_int("f", f, low=0, high=N_WORKERS - 1)
    check_choice("attack", attack, aggregation.ATTACKS[:-1])
    return _run(aggregator, f, attack if f else "none", seed)


@lru_cache(maxsize=256)
def _run(aggregator: str, f: int, attack: str, seed: int) -> aggregation.Simulation:
    split = _digits()
    model = models.mlp(hidden=SETTINGS["hidden"], seed=seed)
    return aggregation.simulate(
        model, split.x_train, split.y_train, eval_data=(split.x_test, split.y_test), n_workers=N_WORKERS,
        f=f, attack=attack, aggregator=aggregator, aggregator_f=max(f, 1),
        lr=SETTINGS["lr"], steps=SETTINGS["steps"], batch_size=SETTINGS["batch_size"],
        eval_every=SETTINGS["eval_every"], seed=seed,
    )


def clear_cache() -> None:
    """Forget cached runs (call after changing ``SETTINGS``)."""
    _run.cache_clear()


def _render(aggregator: str, f: float, *, attack: str) -> Figure:
    """Accuracy over training for one rule and one number of attackers, against the clean mean."""
    f = int(round(f))
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    clean = run_setting("mean", 0, attack)
    ax.plot(clean.steps, clean.accuracy, color=PALETTE["black"], linestyle="--", linewidth=1.2,
            label="mean, no attackers")
    allowed = aggregation.max_tolerated(aggregator, N_WORKERS) if aggregator != "mean" else N_WORKERS - 1
    if f > allowed:
        ax.text(0.5, 0.5, f"{LABELS[aggregator]} cannot tolerate f = {f}\n(needs n_workers > "
                f"{'2f + 2' if aggregator == 'krum' else '2f'})", transform=ax.transAxes, ha="center")
    else:
        run = run_setting(aggregator, f, attack)
        accuracy = [0.0 if math.isnan(a) else a for a in run.accuracy]
        note = " (diverged)" if run.diverged else ""
        ax.plot(run.steps, accuracy, color=PALETTE["vermillion"], marker="o", markersize=3,
                label=f"{LABELS[aggregator]}, {f} of {N_WORKERS} workers '{attack}'{note}")
    ax.set_ylim(0, 1)
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy (fraction)")
    ax.set_title(f"{LABELS[aggregator]} against {f} Byzantine worker(s)")
    ax.legend(loc="best", fontsize=8)
    return fig


def aggregation_explorer(*, attack: str = "sign_flip", live: bool | None = None) -> widgets.VBox:
    """Explorer: aggregator x number of malicious workers (0, 1, 3 precomputed; 0-4 live) -> accuracy curve."""
    check_choice("attack", attack, aggregation.ATTACKS[:-1])

    def render(aggregator: str, f: float) -> Figure:
        return _render(aggregator, f, attack=attack)

    return explorer(
        render,
        {"aggregator": list(aggregation.AGGREGATORS), "f": [0, 1, 3]},
        live=live,
        live_ranges={"f": (0, 4, 1)},
        descriptions={"aggregator": "aggregator", "f": "malicious workers"},
        title=f"Byzantine workers ('{attack}') against four aggregation rules",
    )
