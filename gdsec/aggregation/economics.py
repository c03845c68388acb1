"""Attacker economics in open-contribution training: what a manipulation campaign pays."""

from __future__ import annotations

from gdsec.validation import check_int, check_number

__all__ = ["payoff"]


def payoff(
    success_gain: float,
    *,
    claims: int,
    reward: float,
    submissions: int,
    fee: float,
    stake_lost: float = 0.0,
) -> float:
    """Attacker profit: reward x claims it newly gets paid for, minus submission fees and any slashed stake.

    Taught in chapter 4.
    """
    check_number("success_gain", success_gain, low=-1.0, high=1.0)
    check_int("claims", claims, low=0)
    check_number("reward", reward, low=0.0)
    check_int("submissions", submissions, low=0)
    check_number("fee", fee, low=0.0)
    check_number("stake_lost", stake_lost, low=0.0)
    return success_gain * claims * reward - submissions * fee - stake_lost
