"""Explorer for chapter 8: switch a masking defence on or off, pick an attack, read the robust accuracy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from ipywidgets import VBox
from matplotlib.figure import Figure

from gdsec.plotting import PALETTE
from gdsec.widgets.core import explorer

__all__ = ["masking_explorer", "plot_attack_bars"]

Results = Mapping[str, Mapping[str, float]]


def _check_results(results: object) -> Results:
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must map each defence name to {attack name: robust accuracy}")
    attacks = None
    for defence, row in results.items():
        if not isinstance(row, Mapping) or not row:
            raise ValueError(f"results[{defence!r}] must map attack names to accuracies")
        if attacks is None:
            attacks = list(row)
        elif list(row) != attacks:
            raise ValueError(f"results[{defence!r}] must list the same attacks as the others: {attacks}")
        for attack, value in row.items():
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"results[{defence!r}][{attack!r}] must be an accuracy in [0, 1], got {value!r}")
    return results  # type: ignore[return-value]


def plot_attack_bars(results: Results, defence: str, attack: str, *, baseline: str = "no defence") -> Figure:
    """Bars of robust accuracy per attack for ``defence`` (the chosen ``attack`` highlighted), next to ``baseline``.

    Taught in chapter 8.
    """
    results = _check_results(results)
    if defence not in results:
        raise ValueError(f"defence must be one of {list(results)}, got {defence!r}")
    attacks = list(results[defence])
    if attack not in attacks:
        raise ValueError(f"attack must be one of {attacks}, got {attack!r}")
    fig, ax = plt.subplots(figsize=(7.6, 3.3), layout="none")
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.2, top=0.9)
    positions = range(len(attacks))
    colours = [PALETTE["vermillion"] if a == attack else PALETTE["sky"] for a in attacks]
    ax.bar(positions, [results[defence][a] for a in attacks], color=colours, width=0.6, label=defence)
    if baseline in results and baseline != defence:
        ax.plot(positions, [results[baseline][a] for a in attacks], "k_", markersize=22, markeredgewidth=2, label=baseline)
    ax.set_xticks(list(positions), attacks, rotation=15)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("robust accuracy (fraction of test set)")
    ax.set_title(f"{defence} vs {attack}: {results[defence][attack]:.0%} of test digits survive")
    ax.legend(loc="upper right", fontsize=8)
    return fig


def masking_explorer(results: Results, *, defences: Sequence[str] | None = None, live: bool | None = None) -> VBox:
    """Defence (on/off and which) x attack kind -> robust accuracy, from results measured in the chapter.

    ``results`` maps defence -> attack -> robust accuracy; every view is a cheap plot of those
    measured numbers, so the live and precomputed faces show exactly the chapter's measurements.
    Taught in chapter 8.
    """
    results = _check_results(results)
    names = list(defences) if defences is not None else list(results)
    for name in names:
        if name not in results:
            raise ValueError(f"defences must be keys of results {list(results)}, got {name!r}")
    attacks = list(results[names[0]])

    def render(defence: str, attack: str) -> Figure:
        return plot_attack_bars(results, defence, attack)

    return explorer(
        render,
        {"defence": names, "attack": attacks},
        live=live,
        descriptions={"defence": "defence", "attack": "attack"},
        title="Does the defence survive the attack? Robust accuracy on the digits test set",
    )
