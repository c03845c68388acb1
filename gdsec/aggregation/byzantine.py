"""Byzantine workers: the gradients omniscient attackers send in place of honest ones."""

from __future__ import annotations

from statistics import NormalDist

import torch

from gdsec.streams import random_stream
from gdsec.validation import check_int

__all__ = ["BYZANTINE_ATTACKS", "CRAFTED_ATTACKS", "alie_z"]

#: The attacks crafted from the round's honest gradients (``_craft_rows``).
CRAFTED_ATTACKS = ("sign_flip", "noise", "scaled", "alie")
#: Every ``attack`` of a ``gdsec.aggregation.Setting``: ``none`` (the attackers send honest copies),
#: the crafted attacks, and ``targeted`` (a gradient that teaches the attacker's own labels, which
#: needs the attacker's data).
BYZANTINE_ATTACKS = ("none", *CRAFTED_ATTACKS, "targeted")


def alie_z(n_workers: int, f: int) -> float:
    """The 'a little is enough' shift z (Baruch et al. 2019) for n workers of which f are malicious.

    z = Phi^-1((n - s) / n) with s = floor(n / 2) + 1 - f supporters the attackers must win over. For
    n = 10 and f = 1, s = 5 and z = Phi^-1(0.5) = 0: the lone attacker sends the honest mean, a no-op
    (z is never negative).

    Taught in chapter 4.
    """
    check_int("n_workers", n_workers, low=2)
    check_int("f", f, low=1, high=n_workers - 1)
    supporters = n_workers // 2 + 1 - f
    return NormalDist().inv_cdf(min(max((n_workers - supporters) / n_workers, 0.5), 0.999))


def _craft_rows(
    honest: torch.Tensor, *, f: int, attack: str, scale: float | None, seeds: list[int]
) -> torch.Tensor:
    """(B, f, d) malicious rows for each of B rounds of honest gradients (B, n - f, d); one seed per round.

    Omniscient attackers who see the honest rows. ``sign_flip``: -scale x the honest mean (scale 4);
    ``noise``: Gaussian noise of standard deviation scale (100) x the honest coordinates' spread;
    ``scaled``: scale (1000) x the honest mean; ``alie``: mean - z x std per coordinate with Baruch et
    al.'s z (scale overrides z); ``none``: honest copies. Arguments are checked by ``simulate_batch``.
    """
    batch, count, width = honest.shape
    if f == 0:
        return honest[:, :0].clone()
    centre = honest.mean(dim=-2)
    spread = (
        (honest - centre.unsqueeze(-2)).pow(2).mean(dim=-2).sqrt()
    )  # population std over the workers
    defaults = {"none": 1.0, "sign_flip": 4.0, "noise": 100.0, "scaled": 1000.0}
    factor = scale if scale is not None else defaults.get(attack, 0.0)
    if attack == "none":
        return honest[:, torch.arange(f) % count].clone()
    if attack == "sign_flip":
        return (-factor * centre).unsqueeze(-2).expand(batch, f, width).clone()
    if attack == "noise":
        size = spread.mean(dim=-1, keepdim=True).clamp_min(1e-8).unsqueeze(-1)
        draws = torch.stack(
            [
                torch.randn(f, width, generator=random_stream(s, "aggregation.byzantine.craft"))
                for s in seeds
            ]
        )
        return centre.unsqueeze(-2) + factor * size * draws.to(honest.dtype)
    if attack == "scaled":
        return (factor * centre).unsqueeze(-2).expand(batch, f, width).clone()
    z = factor if scale is not None else alie_z(count + f, f)
    return (centre - z * spread).unsqueeze(-2).expand(batch, f, width).clone()
