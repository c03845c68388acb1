"""Explorer for chapter 8: how hot must the softmax be before an attack goes blind, and which digits
does each attack still break? Temperature x attack, with the outcome of every digit."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from ipywidgets import VBox
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from torch import nn

from gdsec import attacks
from gdsec.masking import defend
from gdsec.models import eval_mode
from gdsec.plotting import PALETTE
from gdsec.validation import check_int, check_model, check_number, check_unit_tensor
from gdsec.widgets.core import explorer

__all__ = ["ATTACK_LABELS", "attack_outcomes", "masking_explorer", "plot_outcomes"]

#: The display labels of the attacks the explorer offers.
ATTACK_LABELS = ("PGD, cross-entropy", "APGD, DLR loss", "Square, 300 queries")

OUTCOMES = ("misclassified clean", "broken by the attack", "survives")


def _run(
    label: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int
) -> torch.Tensor:
    """Adversarial inputs from the attack named ``label``."""
    if label == ATTACK_LABELS[0]:
        return attacks.pgd(model, x, y, eps, steps=20, seed=seed)
    if label == ATTACK_LABELS[1]:
        return attacks.apgd(model, x, y, eps, loss="dlr", steps=20, seed=seed)
    return attacks.square_attack(model, x, y, eps, steps=300, p_init=0.8, seed=seed)


def attack_outcomes(
    classifier: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    temperature: float,
    attack: str,
    eps: float,
    seed: int = 0,
) -> tuple[torch.Tensor, float]:
    """Per row 0 (misclassified clean), 1 (broken) or 2 (survives) for ``attack`` on the classifier at
    ``temperature``, and the share of rows with an exactly zero input gradient.

    Taught in chapter 8.
    """
    check_model("classifier", classifier)
    if attack not in ATTACK_LABELS:
        raise ValueError(f"attack must be one of {list(ATTACK_LABELS)}, got {attack!r}")
    eps = check_number("eps", eps, low=0.0, high=1.0, low_open=True)
    model = defend(
        classifier,
        "temperature",
        temperature=check_number("temperature", temperature, low=0.0, low_open=True),
    )
    x_adv = _run(attack, model, x, y, eps, check_int("seed", seed, low=0))
    with torch.no_grad():
        correct, survives = model(x).argmax(1) == y, model(x_adv).argmax(1) == y
    with eval_mode(model):
        zero = attacks.zero_gradient_rows(model, x, y).float().mean().item()
    return correct.long() + (correct & survives).long(), zero


def plot_outcomes(
    outcome: torch.Tensor, y: torch.Tensor, *, temperature: float, attack: str, zero_fraction: float
) -> Figure:
    """The outcome of every digit as a grid of coloured cells labelled with the true class.

    Taught in chapter 8.
    """
    n = len(outcome)
    cols = 10
    rows = -(-n // cols)
    grid = torch.full((rows * cols,), float("nan"))
    grid[:n] = outcome.float()
    fig, ax = plt.subplots(figsize=(5.6, 0.32 * rows + 1.1), layout="none")
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.12, top=0.84)
    cmap = ListedColormap(["#BBBBBB", PALETTE["vermillion"], PALETTE["sky"]])
    ax.imshow(grid.reshape(rows, cols).numpy(), cmap=cmap, vmin=-0.5, vmax=2.5, aspect="auto")
    for i, label in enumerate(y.tolist()):
        ax.text(
            i % cols, i // cols, str(label), ha="center", va="center", fontsize=8, color="black"
        )
    ax.set_xticks([])
    ax.set_yticks([])
    kept = int((outcome == 2).sum())
    ax.set_title(
        f"T = {temperature:g}, {attack}: {kept} of {n} digits survive; zero gradient on {zero_fraction:.0%}",
        fontsize=9,
    )
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i)) for i in range(3)]
    fig.legend(handles, OUTCOMES, loc="lower center", ncol=3, fontsize=8, frameon=False)
    return fig


def masking_explorer(
    classifier: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    temperatures: Sequence[float] = (1.0, 10.0, 100.0, 1000.0),
    seed: int = 0,
    live: bool | None = None,
) -> VBox:
    """Softmax temperature x attack -> the outcome of every digit of (x, y) (aim for <= 100 rows).

    Live in a kernel (attacks computed on demand); in the book each of the
    ``len(temperatures) * len(ATTACK_LABELS)`` views is computed once at build time.
    Taught in chapter 8.
    """
    check_model("classifier", classifier)
    x = check_unit_tensor("x", x, min_dim=2)
    if not isinstance(y, torch.Tensor) or y.shape != (len(x),):
        raise ValueError(f"y must be a tensor of {len(x)} labels, one per row of x")
    temps = [check_number("temperatures", t, low=0.0, low_open=True) for t in temperatures]
    if not temps:
        raise ValueError("temperatures must list at least one positive temperature")
    eps = check_number("eps", eps, low=0.0, high=1.0, low_open=True)
    seed = check_int("seed", seed, low=0)

    def render(temperature: float, attack: str) -> Figure:
        outcome, zero = attack_outcomes(
            classifier, x, y, temperature=temperature, attack=attack, eps=eps, seed=seed
        )
        return plot_outcomes(outcome, y, temperature=temperature, attack=attack, zero_fraction=zero)

    return explorer(
        render,
        {"temperature": temps, "attack": list(ATTACK_LABELS)},
        live=live,
        descriptions={"temperature": "temperature T", "attack": "attack"},
        title=f"Which digits survive? Logits x T, eps = {eps:g}, {len(x)} test digits",
    )
