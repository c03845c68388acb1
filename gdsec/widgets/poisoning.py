"""Chapter 3 explorer: poison fraction x attack kind -> clean accuracy, backdoor success, examples.

The explorer only lays out results it is handed: the chapter measures its sweep with
:func:`gdsec.poisoning.experiments.measure` and passes the results in. In a live kernel, a ``compute`` function
(for example ``functools.partial(experiments.measure, split, recipe=recipe)``) trains the fractions
the sweep does not hold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from gdsec.plotting import PALETTE
from gdsec.poisoning import apply_trigger
from gdsec.poisoning.experiments import POISON_KINDS, Measurement
from gdsec.train import predict
from gdsec.validation import check_batch, check_labels
from gdsec.widgets.core import explorer

__all__ = ["FRACTIONS", "poisoning_explorer"]

#: Poisoned fractions the precomputed face offers.
FRACTIONS = (0.0, 0.05, 0.1, 0.2, 0.3)

Results = Mapping[tuple[str, float], Measurement]


def _draw(
    result: Measurement, kind: str, fraction: float, x_test: torch.Tensor, y_test: torch.Tensor
) -> Figure:
    """Bars for clean accuracy and trigger success, and six test digits (true → predicted class)."""
    fig, axes = plt.subplot_mosaic(
        [["bar", "d0", "d1", "d2"], ["bar", "d3", "d4", "d5"]],
        figsize=(7.2, 3.3),
        gridspec_kw={"width_ratios": [2.4, 1, 1, 1]},
    )
    ax = axes["bar"]
    ax.bar(
        ["clean\naccuracy", f"trigger\nsuccess (→{result.target})"],
        [result.clean_accuracy, result.attack_success],
        color=[PALETTE["blue"], PALETTE["vermillion"]],
    )
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction of test digits")
    ax.set_title(f"{kind}, {fraction:.0%} of training rows", fontsize=10)
    keep = y_test != result.target
    shown, truth = x_test[keep][:6], y_test[keep][:6]
    if kind == "backdoor":
        shown = apply_trigger(shown)
    predicted = predict(result.model, shown)
    for i in range(6):
        cell = axes[f"d{i}"]
        cell.imshow(shown[i, 0].numpy(), cmap="gray_r", vmin=0, vmax=1)
        cell.set_title(f"{int(truth[i])} → {int(predicted[i])}", fontsize=8)
        cell.axis("off")
    return fig


def poisoning_explorer(
    results: Results,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    *,
    fractions: Sequence[float] = FRACTIONS,
    compute: Callable[[str, float], Measurement] | None = None,
    live: bool | None = None,
) -> widgets.VBox:
    """Explorer: attack kind x poison fraction -> clean accuracy, trigger success, six test digits.

    ``results`` maps ``(kind, fraction)`` to a :class:`~gdsec.poisoning.experiments.Measurement` and
    must hold every kind of ``POISON_KINDS`` at every one of ``fractions`` (the precomputed views);
    ``x_test, y_test`` supply the digits shown. In a live kernel the slider runs from 0 to 50 %, and
    ``compute(kind, fraction)`` measures fractions ``results`` lacks (without it, only ``fractions``
    are offered).

    Taught in chapter 3.
    """
    check_batch("x_test", x_test, unit=True)
    if x_test.dim() != 4:
        raise ValueError(f"x_test must be images (N, 1, H, W), got shape {tuple(x_test.shape)}")
    check_labels("y_test", y_test, n=x_test.shape[0])
    if compute is not None and not callable(compute):
        raise ValueError("compute must be a callable (kind, fraction) -> Measurement, or None")
    grid = [round(float(f), 3) for f in fractions]
    known = {(kind, round(float(f), 3)): result for (kind, f), result in results.items()}
    missing = [(kind, f) for kind in POISON_KINDS for f in grid if (kind, f) not in known]
    if missing:
        raise ValueError(f"results must hold every (kind, fraction) of the grid; missing {missing}")

    def render(kind: str, fraction: float) -> Figure:
        key = (kind, round(float(fraction), 3))
        if key not in known:
            if compute is None:
                raise ValueError(f"results has no run for {key} and no compute function was given")
            known[key] = compute(*key)
        return _draw(known[key], kind, key[1], x_test, y_test)

    return explorer(
        render,
        {"kind": list(POISON_KINDS), "fraction": grid},
        live=live,
        live_ranges={"fraction": (0.0, 0.5, 0.01)} if compute is not None else None,
        descriptions={"kind": "attack", "fraction": "poisoned fraction"},
        title="Poisoning the digits: how much does it take?",
    )
