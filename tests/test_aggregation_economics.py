"""Tests for gdsec.aggregation.economics: what a manipulation campaign pays."""

from __future__ import annotations

import pytest

from gdsec import aggregation as ag


def test_payoff() -> None:
    assert ag.payoff(0.5, claims=10, reward=2.0, submissions=4, fee=0.5) == pytest.approx(8.0)
    assert ag.payoff(
        0.5, claims=10, reward=2.0, submissions=4, fee=0.5, stake_lost=20.0
    ) == pytest.approx(-12.0)
    with pytest.raises(ValueError, match="fee"):
        ag.payoff(0.5, claims=10, reward=2.0, submissions=4, fee=-1.0)
