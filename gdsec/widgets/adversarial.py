"""Explorers for chapters 5 and 6: an eps slider over one attacked digit, and a train-eps x test-eps grid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from gdsec import attacks
from gdsec.plotting import PALETTE
from gdsec.validation import check_choice, check_int, check_labels, check_model, check_unit_tensor
from gdsec.widgets.core import explorer

__all__ = ["epsilon_explorer", "render_attack", "robustness_explorer"]


def _prediction(model: nn.Module, image: torch.Tensor) -> tuple[int, float]:
    """(predicted class, its softmax confidence) for one image of shape (1, ...)."""
    with torch.no_grad():
        probs = torch.softmax(model(image), dim=1)[0]
    return int(probs.argmax()), float(probs.max())


def render_attack(model: nn.Module, image: torch.Tensor, label: int, eps: float, *, attack: str = "fgsm") -> Figure:
    """Three panels for one digit: clean image, perturbation, adversarial image, with predictions.

    ``attack`` is "fgsm" or "pgd" (20 steps, seed 0). Taught in chapter 5.
    """
    x, y = image[None], torch.tensor([label])
    settings = {"fgsm": {}, "pgd": {"steps": 20, "seed": 0}}[check_choice("attack", attack, ("fgsm", "pgd"))]
    x_adv = attacks.ATTACKS[attack].fn(model, x, y, eps, **settings)
    delta = (x_adv - x)[0, 0].numpy()
    fig, axes = plt.subplots(1, 3, figsize=(6.6, 2.6))
    clean_pred, clean_conf = _prediction(model, x)
    adv_pred, adv_conf = _prediction(model, x_adv)
    axes[0].imshow(x[0, 0], vmin=0, vmax=1)
    axes[0].set_title(f"clean: says {clean_pred} ({clean_conf:.0%})", fontsize=9)
    bound = max(float(eps), 1e-3)
    shown = axes[1].imshow(delta, cmap="PuOr", vmin=-bound, vmax=bound)
    axes[1].set_title(f"perturbation (max |δ| = {np.abs(delta).max():.2f})", fontsize=9)
    fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04, label="pixel change")
    colour = PALETTE["vermillion"] if adv_pred != label else PALETTE["green"]
    axes[2].imshow(x_adv[0, 0], vmin=0, vmax=1)
    axes[2].set_title(f"adversarial: says {adv_pred} ({adv_conf:.0%})", fontsize=9, color=colour)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    fig.suptitle(f"{attack.upper()}, ε = {eps:g} (pixel intensity, L∞); true label {label}", fontsize=10)
    return fig


def epsilon_explorer(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps_values: Sequence[float] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3),
    indices: Sequence[int] = (0, 1, 2),
    attack: str | Sequence[str] = "fgsm",
    live: bool | None = None,
) -> widgets.VBox:
    """An eps slider (and a digit picker) showing clean digit, perturbation, adversarial digit, predictions.

    ``attack`` is "fgsm", "pgd" (20 steps, seed 0), or a sequence of them: then the explorer also
    has an attack control, so one step and many can be compared on the same digit and budget.
    Taught in chapter 5.
    """
    check_model("model", model)
    check_unit_tensor("x", x, min_dim=2)
    check_labels("y", y, n=x.shape[0])
    names = _attack_names(attack)
    for i in indices:
        check_int("indices", i, low=0, high=x.shape[0] - 1)

    def render(eps: float, digit: int, attack: str = names[0]) -> Figure:
        return render_attack(model, x[digit], int(y[digit]), eps, attack=attack)

    grid: dict[str, list[object]] = {"eps": list(eps_values), "digit": list(indices)}
    if len(names) > 1:
        grid["attack"] = list(names)
    label = " / ".join(name.upper() for name in names)
    return explorer(
        render,
        grid,
        live=live,
        live_ranges={"eps": (0.0, 0.5, 0.01)},
        descriptions={"eps": "ε (L∞ budget)", "digit": "test digit #", "attack": "attack"},
        title=f"{label} on the digits CNN: move ε",
    )


def _attack_names(attack: object) -> tuple[str, ...]:
    """``attack`` (one name or a sequence of distinct names) as a tuple of names from ("fgsm", "pgd")."""
    names = (attack,) if isinstance(attack, str) else tuple(attack) if isinstance(attack, Sequence) else (attack,)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"attack must be 'fgsm', 'pgd' or a sequence of distinct ones, got {attack!r}")
    return tuple(check_choice("attack", name, ("fgsm", "pgd")) for name in names)


def _mosaic(ax: plt.Axes, images: torch.Tensor, predicted: torch.Tensor, labels: torch.Tensor, ncols: int = 3) -> None:
    """Draw (n, 1, 8, 8) images as one tiled picture on ``ax``, each tile titled with its prediction."""
    n = len(images)
    nrows = -(-n // ncols)
    size = images.shape[-1]
    canvas = np.full((nrows * (size + 3), ncols * (size + 1)), np.nan)
    for i in range(n):
        r, c = divmod(i, ncols)
        top, left = r * (size + 3) + 2, c * (size + 1)
        canvas[top : top + size, left : left + size] = images[i, 0].numpy()
        wrong = int(predicted[i]) != int(labels[i])
        ax.text(left + size / 2 - 0.5, top - 0.7, f"says {int(predicted[i])}", ha="center", fontsize=8,
                color=PALETTE["vermillion"] if wrong else PALETTE["green"])
    ax.imshow(canvas, vmin=0, vmax=1)
    ax.axis("off")


def robustness_explorer(
    accuracy: Mapping[float, Sequence[float]],
    examples: Mapping[tuple[float, float], tuple[torch.Tensor, torch.Tensor]],
    test_eps: Sequence[float],
    *,
    labels: torch.Tensor,
    curve_eps: Sequence[float] | None = None,
    live: bool | None = None,
) -> widgets.VBox:
    """Train-eps x test-eps explorer over precomputed results (nothing is trained or attacked here).

    ``accuracy[train_eps]`` lists robust accuracy at each of ``curve_eps`` (default ``test_eps``);
    ``examples[(train_eps, test_eps)]`` is ``(x_adv, predictions)`` for a few test digits whose true
    ``labels`` are given, for every training eps and every eps of ``test_eps`` (the control's values).
    Taught in chapter 6.
    """
    train_values = list(accuracy)
    curve_eps = list(test_eps if curve_eps is None else curve_eps)
    for train_eps in train_values:
        if len(accuracy[train_eps]) != len(curve_eps):
            raise ValueError(f"accuracy[{train_eps}] must have one value per curve eps ({len(curve_eps)})")
        for value in test_eps:
            if (train_eps, value) not in examples:
                raise ValueError(f"examples is missing the setting (train eps {train_eps}, test eps {value})")
            if value not in curve_eps:
                raise ValueError(f"test eps {value} is not one of curve_eps {curve_eps}")

    def render(train_eps: float, test_eps_value: float) -> Figure:
        x_adv, predicted = examples[(train_eps, test_eps_value)]
        fig, (ax, tiles) = plt.subplots(1, 2, figsize=(7.2, 2.9), width_ratios=[1.3, 1])
        for value in train_values:
            style = {"linewidth": 2.4} if value == train_eps else {"linewidth": 1.0, "alpha": 0.5}
            ax.plot(curve_eps, accuracy[value], marker="o", markersize=3, label=f"train ε={value:g}", **style)
        column = curve_eps.index(test_eps_value)
        ax.plot([test_eps_value], [accuracy[train_eps][column]], "s", color="k", markersize=7)
        ax.set_xlabel("test ε (L∞, pixel intensity)")
        ax.set_ylabel("robust accuracy")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
        _mosaic(tiles, x_adv, predicted, labels)
        fig.suptitle(f"model trained at ε={train_eps:g}, attacked by PGD at ε={test_eps_value:g}", fontsize=10)
        return fig

    return explorer(
        render,
        {"train_eps": train_values, "test_eps_value": list(test_eps)},
        live=live,
        descriptions={"train_eps": "training ε", "test_eps_value": "attack ε"},
        title="Adversarial training: training ε × attack ε",
    )
