"""Byzantine workers: the gradients omniscient attackers send in place of honest ones."""

from __future__ import annotations

from statistics import NormalDist

import torch

from gdsec.aggregation.rules import check_grads
from gdsec.validation import check_choice, check_int, check_number, check_seed

__all__ = ["BYZANTINE_ATTACKS", "CRAFTED_ATTACKS", "alie_z", "byzantine_gradients"]

#: What :func:`byzantine_gradients` crafts from the honest gradients of the round.
CRAFTED_ATTACKS = ("none", "sign_flip", "noise", "scaled", "alie")
#: Every attack ``gdsec.aggregation.simulate`` runs: the crafted ones, and ``targeted`` (a gradient
#: that teaches the attacker's own labels, which needs the attacker's data).
BYZANTINE_ATTACKS = (*CRAFTED_ATTACKS, "targeted")


def alie_z(n_workers: int, f: int) -> float:
    """The 'a little is enough' shift z (Baruch et al. 2019) for n workers of which f are malicious.

    Taught in chapter 4.
    """
    check_int("n_workers", n_workers, low=2)
    check_int("f", f, low=1, high=n_workers - 1)
    supporters = n_workers // 2 + 1 - f
    return NormalDist().inv_cdf(min(max((n_workers - supporters) / n_workers, 0.5), 0.999))


def byzantine_gradients(
    honest: torch.Tensor, *, f: int, attack: str, scale: float | None = None, seed: int = 0
) -> torch.Tensor:
    """(f, d) malicious gradients crafted by omniscient attackers who see the honest ones (n - f, d).

    ``attack`` is one of ``CRAFTED_ATTACKS``. ``sign_flip``: -scale x the honest mean (scale 4);
    ``noise``: Gaussian noise of standard deviation scale (100) x the honest coordinates' spread;
    ``scaled``: scale (1000) x the honest mean; ``alie``: mean - z x std per coordinate with Baruch et
    al.'s z (scale overrides z); ``none``: honest copies.

    Taught in chapter 4.
    """
    check_grads(honest)
    check_int("f", f, low=0)
    check_choice("attack", attack, CRAFTED_ATTACKS)
    generator = check_seed(seed)
    if f == 0:
        return honest[:0].clone()
    centre = honest.mean(dim=0)
    spread = honest.std(dim=0, unbiased=False) if honest.shape[0] > 1 else torch.zeros_like(centre)
    defaults = {"none": 1.0, "sign_flip": 4.0, "noise": 100.0, "scaled": 1000.0}
    factor = check_number("scale", scale, low=0.0) if scale is not None else defaults.get(attack, 0.0)
    if attack == "none":
        rows = honest[torch.arange(f) % honest.shape[0]].clone()
    elif attack == "sign_flip":
        rows = (-factor * centre).expand(f, -1).clone()
    elif attack == "noise":
        size = spread.mean().clamp_min(1e-8)
        rows = centre + factor * size * torch.randn(f, centre.numel(), generator=generator)
    elif attack == "scaled":
        rows = (factor * centre).expand(f, -1).clone()
    else:
        z = factor if scale is not None else alie_z(honest.shape[0] + f, f)
        rows = (centre - z * spread).expand(f, -1).clone()
    return rows
