"""Chapter 3 explorer: poison fraction x attack kind -> clean accuracy, backdoor success, examples.

:func:`measure` is the experiment behind the chapter's sweeps and the explorer: a small MLP trained
on the digits after label flipping or after planting the backdoor. It is cached per setting.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import NamedTuple

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn

from gdsec import data, models, poisoning, train
from gdsec.plotting import PALETTE
from gdsec.validation import check_choice, check_fraction
from gdsec.widgets.core import explorer

__all__ = ["KINDS", "SETTINGS", "TARGET", "Measurement", "measure", "poisoning_explorer"]

KINDS = ("label flip", "backdoor")
#: The backdoor's target class.
TARGET = 0
#: Training settings shared by the sweeps and the explorer.
SETTINGS = {"hidden": 32, "lr": 0.1, "epochs": 15, "batch_size": 32}


class Measurement(NamedTuple):
    """One poisoned training run: clean test accuracy, backdoor success, the model and the poisoned data."""

    clean_accuracy: float
    attack_success: float
    model: nn.Module
    x_train: torch.Tensor
    y_train: torch.Tensor
    index: torch.Tensor


@cache
def _digits() -> data.Split:
    return data.load_digits()


def measure(kind: str, fraction: float, seed: int = 0) -> Measurement:
    """Poison ``fraction`` of the digits' training rows (``kind`` of ``KINDS``), train the MLP, measure it.

    ``index`` holds the poisoned rows. Results are cached; a zero fraction is the same clean run for both kinds.
    """
    check_choice("kind", kind, KINDS)
    check_fraction("fraction", fraction)
    return _measure(kind if fraction > 0 else KINDS[0], float(fraction), seed)


@lru_cache(maxsize=64)
def _measure(kind: str, fraction: float, seed: int) -> Measurement:
    split = _digits()
    if kind == "label flip":
        x_train = split.x_train
        y_train = poisoning.flip_labels(split.y_train, fraction, n_classes=10, seed=seed)
        index = torch.nonzero(y_train != split.y_train).flatten()
    else:
        x_train, y_train, index = poisoning.add_backdoor(
            split.x_train, split.y_train, target=TARGET, fraction=fraction, seed=seed
        )
    model = models.mlp(hidden=SETTINGS["hidden"], seed=seed)
    train.train(model, x_train, y_train, lr=SETTINGS["lr"], epochs=SETTINGS["epochs"],
                batch_size=SETTINGS["batch_size"], seed=seed, progress=False)
    clean = train.accuracy(model, split.x_test, split.y_test)
    success = poisoning.attack_success_rate(model, split.x_test, split.y_test, target=TARGET)
    return Measurement(clean, success, model, x_train, y_train, index)


def _render(kind: str, fraction: float) -> Figure:
    """Bars for clean accuracy and trigger success, and six test digits (true → predicted class)."""
    result = measure(kind, round(float(fraction), 3))
    split = _digits()
    fig, axes = plt.subplot_mosaic(
        [["bar", "d0", "d1", "d2"], ["bar", "d3", "d4", "d5"]], figsize=(7.2, 3.3),
        gridspec_kw={"width_ratios": [2.4, 1, 1, 1]},
    )
    ax = axes["bar"]
    ax.bar(["clean\naccuracy", f"trigger\nsuccess (→{TARGET})"], [result.clean_accuracy, result.attack_success],
           color=[PALETTE["blue"], PALETTE["vermillion"]])
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction of test digits")
    ax.set_title(f"{kind}, {fraction:.0%} of training rows", fontsize=10)
    keep = split.y_test != TARGET
    shown, truth = split.x_test[keep][:6], split.y_test[keep][:6]
    if kind == "backdoor":
        shown = poisoning.apply_trigger(shown)
    predicted = train.predict(result.model, shown)
    for i in range(6):
        cell = axes[f"d{i}"]
        cell.imshow(shown[i, 0], cmap="gray_r", vmin=0, vmax=1)
        cell.set_title(f"{int(truth[i])} → {int(predicted[i])}", fontsize=8)
        cell.axis("off")
    return fig


def poisoning_explorer(*, live: bool | None = None) -> widgets.VBox:
    """Explorer: attack kind x poison fraction (0-30 % precomputed, 0-50 % live) -> accuracy, success, digits."""

    return explorer(
        _render,
        {"kind": list(KINDS), "fraction": [0.0, 0.05, 0.1, 0.2, 0.3]},
        live=live,
        live_ranges={"fraction": (0.0, 0.5, 0.01)},
        descriptions={"kind": "attack", "fraction": "poisoned fraction"},
        title="Poisoning the digits: how much does it take?",
    )
