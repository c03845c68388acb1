"""Tests for gdsec.aggregation.byzantine: what Byzantine workers send."""

from __future__ import annotations

import pytest
import torch

from gdsec import aggregation as ag
from gdsec.aggregation.byzantine import _craft_rows


def craft(
    honest: torch.Tensor, *, f: int, attack: str, scale: float | None = None, seed: int = 0
) -> torch.Tensor:
    """(f, d) rows the attackers send against one round of honest gradients (n - f, d)."""
    return _craft_rows(honest[None], f=f, attack=attack, scale=scale, seeds=[seed])[0]


@pytest.mark.parametrize("attack", ["none", "sign_flip", "noise", "scaled", "alie"])
def test_crafted_rows_shape_and_purity(attack: str) -> None:
    honest = torch.randn(7, 20, generator=torch.Generator().manual_seed(0))
    before = honest.clone()
    bad = craft(honest, f=3, attack=attack, seed=1)
    assert bad.shape == (3, 20) and torch.isfinite(bad).all()
    assert torch.equal(honest, before)
    assert torch.equal(bad, craft(honest, f=3, attack=attack, seed=1))
    assert craft(honest, f=0, attack=attack).shape == (0, 20)


def test_byzantine_attack_directions() -> None:
    honest = 1.0 + 0.1 * torch.randn(8, 30, generator=torch.Generator().manual_seed(0))
    centre = honest.mean(0)
    assert torch.dot(craft(honest, f=2, attack="sign_flip")[0], centre) < 0
    assert craft(honest, f=2, attack="scaled")[0].norm() > 10 * centre.norm()
    alie = craft(honest, f=2, attack="alie")[0]
    spread = honest.std(0, unbiased=False)
    assert torch.all(alie < centre) and torch.all(alie > centre - 3 * spread)


def test_alie_spread_is_the_population_std_over_the_honest_workers() -> None:
    """ALIE sends mean - z * std per coordinate, std over the honest workers with ddof=0 (Baruch et al., 2019).

    By hand: a coordinate the four honest workers report as 0, 0, 3, 3 has mean 1.5 and population std
    1.5 (the sample std would be sqrt(3) = 1.73); a coordinate they agree on (2, 2, 2, 2) has std 0.
    """
    honest = torch.tensor([[0.0, 2.0], [0.0, 2.0], [3.0, 2.0], [3.0, 2.0]])
    assert torch.equal(
        craft(honest, f=2, attack="alie", scale=2.0), torch.tensor([[-1.5, 2.0], [-1.5, 2.0]])
    )


def test_alie_z_matches_paper_formula() -> None:
    # n = 50, f = 12: s = 50 // 2 + 1 - 12 = 14, z = Phi^-1((50 - 14) / 50) = Phi^-1(0.72)
    assert ag.alie_z(50, 12) == pytest.approx(0.5828, abs=1e-3)
    with pytest.raises(ValueError, match="f"):
        ag.alie_z(5, 0)


def test_alie_with_one_attacker_of_ten_sends_the_honest_mean() -> None:
    assert [round(ag.alie_z(10, f), 2) for f in range(1, 5)] == [0.0, 0.25, 0.52, 0.84]
    honest = torch.randn(9, 12, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(craft(honest, f=1, attack="alie")[0], honest.mean(0))


@pytest.mark.parametrize("attack", ["none", "sign_flip", "noise", "scaled", "alie"])
def test_batched_crafting_equals_one_round_at_a_time(attack: str) -> None:
    honest = torch.randn(4, 7, 9, generator=torch.Generator().manual_seed(3))
    batched = _craft_rows(honest, f=3, attack=attack, scale=None, seeds=[5, 6, 7, 8])
    single = torch.stack(
        [craft(h, f=3, attack=attack, seed=s) for h, s in zip(honest, [5, 6, 7, 8], strict=True)]
    )
    assert torch.allclose(batched, single, atol=1e-6)


def test_attack_names_are_explicit_and_do_not_clash_with_gdsec_attacks() -> None:
    assert ag.CRAFTED_ATTACKS == ("sign_flip", "noise", "scaled", "alie")
    assert ag.BYZANTINE_ATTACKS == ("none", *ag.CRAFTED_ATTACKS, "targeted")
    assert not hasattr(ag, "ATTACKS")


def test_noise_attack_default_seed_is_zero() -> None:
    honest = torch.randn(6, 10, generator=torch.Generator().manual_seed(0))
    default = craft(honest, f=2, attack="noise")
    assert torch.equal(default, craft(honest, f=2, attack="noise", seed=0))
    assert not torch.equal(default, craft(honest, f=2, attack="noise", seed=1))
