"""Seven models whose truth we know: the suspects chapter 10 tests the audit on.

All are small ReLU MLPs trained on the digits: honest; backdoored with a bright 2x2 corner patch
(chapter 3's trigger) or a dark one (the ink of the four central pixels removed), each on several
seeds; a copy of the honest model with its logits scaled by 1,000; a masked (3-level quantised) and
a randomised "defence" of it; and an adversarially trained model.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from gdsec import attacks, masking, models, poisoning, seeds, train
from gdsec.data import Split
from gdsec.streams import random_stream
from gdsec.validation import check_int, check_number

__all__ = ["DARK_TRIGGER", "SUSPECT_KINDS", "Suspects", "train_suspects"]

#: Flat indices of the central 2x2 pixels of an 8x8 digit, the dark trigger (stamped at 0).
DARK_TRIGGER = (27, 28, 35, 36)

#: The training sets trained on several seeds: clean, with the bright trigger, with the dark one.
SUSPECT_KINDS = ("honest", "bright", "dark")

_TARGET, _FRACTION = 0, 0.05  # both backdoors send one row in twenty of other classes to class 0


class Suspects(NamedTuple):
    """The suspects and what we know about them.

    ``audited``: the seven models by name, each with the split it was trained on (what an auditor
    is handed); ``by_kind``, ``splits`` and ``poisoned``: for each of :data:`SUSPECT_KINDS`, one model,
    its training split and its poisoned row indices per seed; ``triggers``: the flat features of
    the bright and the dark trigger.

    Taught in chapter 10.
    """

    audited: dict[str, tuple[nn.Module, Split]]
    by_kind: dict[str, tuple[nn.Module, ...]]
    splits: dict[str, tuple[Split, ...]]
    poisoned: dict[str, tuple[torch.Tensor, ...]]
    triggers: dict[str, tuple[int, ...]]


def _dark_backdoor(
    x: torch.Tensor, y: torch.Tensor, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Remove the central ink of one row in twenty of other classes and relabel them 0 (chapter 10's draws)."""
    generator = random_stream(seed, "ch10.dark_backdoor")
    others = (y != _TARGET).nonzero().flatten()
    order = torch.randperm(len(others), generator=generator).to(y.device)
    rows = others[order[: round(_FRACTION * len(y))]]
    x, y = x.clone(), y.clone()
    x[rows] = poisoning.stamp(x[rows], DARK_TRIGGER, 0.0)
    y[rows] = _TARGET
    return x, y, rows.sort().values


def train_suspects(split: Split, n_seeds: int = 3, *, eps: float = 0.1) -> Suspects:
    """Train the seven suspects on ``split``: the three :data:`SUSPECT_KINDS` on ``n_seeds`` seeds each, then the rest.

    The ``3 * n_seeds`` runs train together as one batched model (Adam, learning rate 0.01, 30
    epochs, batches of 64), run ``i`` with seed ``i``; poisoning draws with seeds 0 to
    ``n_seeds - 1``. The audited honest, bright and dark models are the first seed's; the scaled
    copy, the masked and the randomised defence wrap the honest one; the adversarially trained
    model trains 15 epochs on 3-step PGD at L-infinity budget ``eps``.

    Taught in chapter 10.
    """
    if not isinstance(split, Split):
        raise ValueError(
            f"split must be a gdsec.data.Split of 8x8 digits, got {type(split).__name__}"
        )
    if split.x_train[0].numel() != 64:
        raise ValueError(
            f"split must hold 8x8 digits (64 features), got rows of shape {tuple(split.x_train.shape[1:])}"
        )
    n_seeds = check_int("n_seeds", n_seeds, low=1)
    eps = check_number("eps", eps, low=0.0, low_open=True)
    x, y = split.x_train, split.y_train
    datasets = {kind: [] for kind in SUSPECT_KINDS}
    for s in range(n_seeds):
        datasets["honest"].append((x, y, torch.empty(0, dtype=torch.long, device=y.device)))
        datasets["bright"].append(
            poisoning.add_backdoor(x, y, target=_TARGET, fraction=_FRACTION, seed=s)
        )
        datasets["dark"].append(_dark_backdoor(x, y, s))
    runs = [datasets[kind][s] for kind in SUSPECT_KINDS for s in range(n_seeds)]
    trained = seeds.train_seeds(
        models.mlp,
        [r[0] for r in runs],
        [r[1] for r in runs],
        seeds=list(range(len(runs))),
        optimizer="adam",
        lr=0.01,
        epochs=30,
        batch_size=64,
    )
    by_kind = {
        kind: tuple(trained[i * n_seeds : (i + 1) * n_seeds])
        for i, kind in enumerate(SUSPECT_KINDS)
    }
    splits = {
        kind: tuple(Split(xs, ys, split.x_test, split.y_test) for xs, ys, _ in datasets[kind])
        for kind in SUSPECT_KINDS
    }
    robust = models.mlp(seed=0)
    train.train(
        robust,
        x,
        y,
        optimizer="adam",
        lr=0.01,
        epochs=15,
        batch_size=64,
        progress=False,
        adversary=lambda m, xb, yb, seed: attacks.pgd(m, xb, yb, eps, steps=3, seed=seed),
    )
    honest = by_kind["honest"][0]
    audited = {
        "honest": (honest, split),
        "bright trigger": (by_kind["bright"][0], splits["bright"][0]),
        "dark trigger": (by_kind["dark"][0], splits["dark"][0]),
        "scaled copy": (masking.defend(honest, "temperature", temperature=1000.0), split),
        "masked": (masking.defend(honest, "quantize", levels=3), split),
        "randomised": (masking.defend(honest, "random", levels=3, noise=0.2, seed=0), split),
        "adversarially trained": (robust, split),
    }
    bright = poisoning.corner_trigger((64,)).tolist()
    return Suspects(
        audited,
        by_kind,
        splits,
        {kind: tuple(r[2] for r in datasets[kind]) for kind in SUSPECT_KINDS},
        {"bright": tuple(bright), "dark": DARK_TRIGGER},
    )
