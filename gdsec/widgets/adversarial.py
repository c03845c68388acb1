"""Explorers for chapters 5 and 6: an eps slider over one attacked digit, and per-row outcomes of model x eps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from gdsec import attacks
from gdsec.attacks import ENSEMBLE, Evaluation
from gdsec.plotting import PALETTE
from gdsec.validation import check_choice, check_int, check_labels, check_model, check_unit_tensor
from gdsec.widgets.core import explorer

__all__ = ["epsilon_explorer", "render_attack", "robustness_explorer", "row_outcomes"]


def _prediction(model: nn.Module, image: torch.Tensor) -> tuple[int, float]:
    """(predicted class, its softmax confidence) for one image of shape (1, ...)."""
    with torch.no_grad():
        probs = torch.softmax(model(image), dim=1)[0]
    return int(probs.argmax()), float(probs.max())


def render_attack(
    model: nn.Module, image: torch.Tensor, label: int, eps: float, *, attack: str = "fgsm"
) -> Figure:
    """Three panels for one digit: clean image, perturbation, adversarial image, with predictions.

    ``attack`` is "fgsm" or "pgd" (20 steps, seed 0). Taught in chapter 5.
    """
    x, y = image[None], torch.tensor([label])
    settings = {"fgsm": {}, "pgd": {"steps": 20, "seed": 0}}[
        check_choice("attack", attack, ("fgsm", "pgd"))
    ]
    x_adv = attacks.ATTACK_SPECS[attack].fn(model, x, y, eps, **settings)
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
    fig.suptitle(
        f"{attack.upper()}, ε = {eps:g} (pixel intensity, L∞); true label {label}", fontsize=10
    )
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
    names = (
        (attack,)
        if isinstance(attack, str)
        else tuple(attack)
        if isinstance(attack, Sequence)
        else (attack,)
    )
    if not names or len(set(names)) != len(names):
        raise ValueError(
            f"attack must be 'fgsm', 'pgd' or a sequence of distinct ones, got {attack!r}"
        )
    return tuple(check_choice("attack", name, ("fgsm", "pgd")) for name in names)


#: How each row of the explorer ended, in drawing order, with its colour.
_OUTCOMES = {
    "wrong when clean": PALETTE["black"],
    "proved (IBP)": PALETTE["blue"],
    "held (not proved)": PALETTE["green"],
    "apgd-ce": PALETTE["vermillion"],
    "apgd-t": PALETTE["orange"],
    "fab-t": PALETTE["purple"],
    "square_attack": PALETTE["yellow"],
}


def row_outcomes(evaluation: Evaluation, proved: torch.Tensor) -> list[str]:
    """Per row, how it ended: "wrong when clean", "proved (IBP)", "held (not proved)" or the attack that broke it.

    ``evaluation`` comes from ``gdsec.attacks.evaluate``, ``proved`` from ``gdsec.verify.certified``
    on the same rows and budget. Taught in chapter 6.
    """
    if not isinstance(evaluation, Evaluation):
        raise ValueError(
            f"evaluation must be an Evaluation from gdsec.attacks.evaluate, got {type(evaluation).__name__}"
        )
    if (
        not isinstance(proved, torch.Tensor)
        or proved.dtype != torch.bool
        or proved.shape != (evaluation.n,)
    ):
        raise ValueError(
            f"proved must be a bool tensor with one entry per evaluated row ({evaluation.n})"
        )
    outcomes = []
    for row, broke in enumerate(evaluation.broken_by):
        if broke == "clean":
            outcomes.append("wrong when clean")
        elif broke is not None:
            if bool(proved[row]):
                raise ValueError(
                    f"row {row} is proved robust but was broken by {broke}: the bound or the attack is wrong"
                )
            outcomes.append(broke)
        else:
            outcomes.append("proved (IBP)" if bool(proved[row]) else "held (not proved)")
    return outcomes


def _outcome_tiles(
    ax: plt.Axes,
    images: torch.Tensor,
    predicted: torch.Tensor,
    outcomes: Sequence[str],
    ncols: int = 6,
) -> None:
    """Draw (n, 1, 8, 8) images tiled on ``ax``: above each its prediction, below each a bar in its outcome's colour."""
    n, size = len(images), images.shape[-1]
    nrows = -(-n // ncols)
    canvas = np.full((nrows * (size + 4), ncols * (size + 1)), np.nan)
    for i in range(n):
        r, c = divmod(i, ncols)
        top, left = r * (size + 4) + 2, c * (size + 1)
        canvas[top : top + size, left : left + size] = images[i, 0].numpy()
        ax.text(
            left + size / 2 - 0.5, top - 0.8, f"says {int(predicted[i])}", ha="center", fontsize=7
        )
        ax.add_patch(
            plt.Rectangle(
                (left - 0.5, top + size - 0.3),
                size,
                0.9,
                color=_OUTCOMES[outcomes[i]],
                clip_on=False,
            )
        )
    ax.imshow(canvas, vmin=0, vmax=1)
    ax.axis("off")


def _outcome_bars(ax: plt.Axes, outcomes: Sequence[str]) -> None:
    """Count the rows per outcome as a labelled horizontal bar chart on ``ax``."""
    labels = list(_OUTCOMES)
    counts = [outcomes.count(label) for label in labels]
    ax.barh(
        range(len(labels)),
        counts,
        color=[_OUTCOMES[label] for label in labels],
        edgecolor="k",
        linewidth=0.4,
    )
    ax.set_yticks(
        range(len(labels)),
        [
            f"broken by {label}" if label in {m.label for m in ENSEMBLE} else label
            for label in labels
        ],
        fontsize=7,
    )
    ax.invert_yaxis()
    for i, count in enumerate(counts):
        ax.text(count + 2, i, str(count), va="center", fontsize=7)
    ax.set_xlabel(f"test digits (of {len(outcomes)})", fontsize=8)
    ax.set_xlim(0, len(outcomes) * 1.15)


def _check_results(results: object, models: object) -> tuple[list[str], list[float]]:
    """Validate the explorer's inputs; return the model names and the eps values (a full grid)."""
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must map at least one name to a model")
    for name, model in models.items():
        check_model(f"models[{name!r}]", model)
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must map (model name, eps) to (Evaluation, proved)")
    eps_values = sorted({key[1] for key in results})
    for name in models:
        for eps in eps_values:
            if (name, eps) not in results:
                raise ValueError(f"results is missing the setting (model {name!r}, eps {eps:g})")
    unknown = sorted({key[0] for key in results} - set(models))
    if unknown:
        raise ValueError(f"results names models {unknown} that models does not hold")
    for key, value in results.items():
        if not (isinstance(value, tuple) and len(value) == 2):
            raise ValueError(f"results[{key!r}] must be a pair (Evaluation, proved)")
        row_outcomes(*value)
    return list(models), eps_values


def robustness_explorer(
    results: Mapping[tuple[str, float], tuple[Evaluation, torch.Tensor]],
    models: Mapping[str, nn.Module],
    *,
    show: Sequence[int] = tuple(range(12)),
    live: bool | None = None,
) -> widgets.VBox:
    """Model x eps explorer of per-row outcomes: which digits IBP proves, which hold, which attack broke the rest.

    ``results[(name, eps)]`` is ``(evaluation, proved)`` for the model ``models[name]`` on the whole test
    set (``evaluate`` and ``gdsec.verify.certified`` at that eps), for every name and eps (a full grid).
    Left: how many test rows ended each way. Right: the test rows ``show``, as the input the attacks
    ended on, with the model's answer and a bar coloured by the outcome. Nothing is attacked here.
    Taught in chapter 6.
    """
    names, eps_values = _check_results(results, models)
    n = next(iter(results.values()))[0].n
    for index in show:
        check_int("show", index, low=0, high=n - 1)
    show = list(show)
    if not 1 <= len(show) <= 24:
        raise ValueError(f"show must list between 1 and 24 rows, got {len(show)}")

    def render(model: str, eps: float) -> Figure:
        evaluation, proved = results[(model, eps)]
        outcomes = row_outcomes(evaluation, proved)
        x_adv = evaluation.x_adv[show]
        with torch.no_grad():
            predicted = models[model](x_adv).argmax(1)
        fig, (bars, tiles) = plt.subplots(1, 2, figsize=(7.8, 3.0), width_ratios=[1, 1.4])
        _outcome_bars(bars, outcomes)
        _outcome_tiles(tiles, x_adv, predicted, [outcomes[i] for i in show])
        ran = " → ".join(evaluation.accuracy_after)
        fig.suptitle(f"{model}, ε = {eps:g} (L∞); IBP, then {ran}", fontsize=9)
        return fig

    return explorer(
        render,
        {"model": names, "eps": eps_values},
        live=live,
        descriptions={"model": "model", "eps": "ε (L∞ budget)"},
        title="Per digit: proved, held, or broken, and by which attack",
    )
