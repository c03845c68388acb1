"""Unit and property tests for gdsec.aggregation.rules: the mean, the robust rules, their limits and cost."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gdsec import aggregation as ag


def honest_and_byzantine(
    n: int, f: int, d: int, seed: int, magnitude: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """n - f honest rows near 1, then f arbitrary rows of size ``magnitude``."""
    generator = torch.Generator().manual_seed(seed)
    honest = 1.0 + 0.1 * torch.randn(n - f, d, generator=generator)
    bad = magnitude * torch.randn(f, d, generator=generator)
    return honest, torch.cat([bad, honest])


workers = st.integers(1, 6).flatmap(
    lambda f: st.tuples(st.just(f), st.integers(2 * f + 1, 2 * f + 8))
)


@pytest.mark.integration
@settings(max_examples=60, deadline=None)
@given(fn=workers, d=st.integers(1, 12), seed=st.integers(0, 10_000), magnitude=st.floats(0.0, 1e6))
def test_median_and_trimmed_mean_stay_inside_honest_range(
    fn: tuple[int, int], d: int, seed: int, magnitude: float
) -> None:
    f, n = fn
    honest, grads = honest_and_byzantine(n, f, d, seed, magnitude)
    low, high = honest.min(dim=0).values - 1e-5, honest.max(dim=0).values + 1e-5
    for result in (ag.coordinate_median(grads), ag.aggregate("trimmed_mean", grads, f=f)):
        assert result.shape == (d,)
        assert torch.all(result >= low) and torch.all(result <= high)


@settings(max_examples=60, deadline=None)
@given(
    f=st.integers(0, 4), extra=st.integers(1, 6), d=st.integers(1, 10), seed=st.integers(0, 10_000)
)
def test_krum_returns_one_of_its_inputs(f: int, extra: int, d: int, seed: int) -> None:
    n = 2 * f + 2 + extra
    _, grads = honest_and_byzantine(n, f, d, seed, 100.0)
    before = grads.clone()
    chosen = ag.krum(grads, f=f)
    assert torch.equal(grads, before)
    assert any(torch.equal(chosen, row) for row in grads)
    chosen += 1.0
    assert torch.equal(grads, before)


def test_krum_picks_an_honest_row_against_outliers() -> None:
    honest, grads = honest_and_byzantine(11, 3, 20, 0, 1000.0)
    chosen = ag.krum(grads, f=3)
    assert any(torch.equal(chosen, row) for row in honest)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 9), d=st.integers(1, 8), seed=st.integers(0, 1000))
def test_rules_agree_on_identical_inputs_and_do_not_modify(n: int, d: int, seed: int) -> None:
    row = torch.randn(d, generator=torch.Generator().manual_seed(seed))
    grads = row.expand(n, d).clone()
    before = grads.clone()
    assert torch.allclose(ag.mean(grads), row)
    assert torch.allclose(ag.coordinate_median(grads), row)
    assert torch.allclose(ag.aggregate("trimmed_mean", grads, f=(n - 1) // 2), row)
    if n >= 3:
        assert torch.allclose(ag.krum(grads, f=(n - 3) // 2), row)
    assert torch.equal(grads, before)


def test_known_values() -> None:
    grads = torch.tensor([[0.0, 10.0], [1.0, 20.0], [2.0, 30.0], [100.0, -100.0]])
    assert torch.allclose(ag.mean(grads), torch.tensor([25.75, -10.0]))
    assert torch.allclose(ag.coordinate_median(grads), torch.tensor([1.5, 15.0]))
    assert torch.allclose(ag.aggregate("trimmed_mean", grads, f=1), torch.tensor([1.5, 15.0]))
    odd = grads[:3]
    assert torch.allclose(ag.coordinate_median(odd), torch.tensor([1.0, 20.0]))


def test_krum_scores_each_row_by_its_n_minus_f_minus_2_nearest() -> None:
    # n = 5, f = 1: two neighbours each. Scores 9.01, 8.42, 7.25, 3.25, 8.5 pick 4.0; with 3 or 4
    # neighbours (n - f - 1 or n - f) the scores pick 3.0 instead.
    grads = torch.tensor([[0.0], [0.1], [3.0], [4.0], [5.5]])
    assert torch.equal(ag.krum(grads, f=1), torch.tensor([4.0]))
    assert torch.equal(ag.aggregate("krum", grads, f=1), torch.tensor([4.0]))


@settings(max_examples=25, deadline=None)
@given(
    f=st.integers(0, 3), extra=st.integers(1, 5), d=st.integers(1, 6), seed=st.integers(0, 10_000)
)
def test_krum_matches_its_definition_written_as_a_loop(
    f: int, extra: int, d: int, seed: int
) -> None:
    n = 2 * f + 2 + extra
    grads = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    scores = [
        sorted(float((grads[i] - grads[j]).pow(2).sum()) for j in range(n) if j != i)[: n - f - 2]
        for i in range(n)
    ]
    best = min(range(n), key=lambda i: sum(scores[i]))
    assert torch.equal(ag.krum(grads, f=f), grads[best])


@pytest.mark.parametrize(
    ("rule", "n", "f"),
    [
        ("krum", 4, 1),  # needs n > 2f + 2
        ("krum", 6, 2),
        ("krum", 2, 0),
        ("trimmed_mean", 4, 2),  # needs n > 2f
        ("trimmed_mean", 5, -1),
        ("trimmed_mean", 5, 1.0),
        ("krum", 7, True),
    ],
)
def test_invalid_f_raises(rule: str, n: int, f: object) -> None:
    grads = torch.randn(n, 3)
    with pytest.raises(ValueError, match="f must be"):
        ag.aggregate(rule, grads, f=f)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), f=st.integers(0, 8))
def test_krum_accepts_exactly_n_greater_than_2f_plus_2(n: int, f: int) -> None:
    for bad in (torch.randn(5), torch.zeros(0, 3), "grads"):
        with pytest.raises(ValueError, match="grads"):
            ag.krum(bad, f=0)
    grads = torch.randn(n, 2)
    if n > 2 * f + 2:
        ag.krum(grads, f=f)
    else:
        with pytest.raises(ValueError, match="f must be"):
            ag.krum(grads, f=f)


@pytest.mark.parametrize(
    "bad",
    [
        torch.randn(5),
        torch.randn(2, 3, 4),
        torch.zeros(3, 2, dtype=torch.int64),
        torch.tensor([[1.0, float("nan")]]),
        torch.zeros(0, 3),
        "grads",
    ],
)
@pytest.mark.parametrize("rule", ag.AGGREGATORS)
def test_bad_grads_raise(rule: str, bad: object) -> None:
    with pytest.raises(ValueError, match="grads"):
        ag.aggregate(rule, bad, f=0)


def test_unknown_aggregator_raises() -> None:
    with pytest.raises(ValueError, match="aggregator"):
        ag.aggregate("average", torch.randn(3, 2))


def test_max_tolerated() -> None:
    assert ag.max_tolerated("krum", 10) == 3
    assert ag.max_tolerated("trimmed_mean", 10) == 4
    assert ag.max_tolerated("coordinate_median", 9) == 4
    assert ag.max_tolerated("mean", 9) == 0


def test_time_aggregator_positive() -> None:
    for rule in ag.AGGREGATORS:
        assert ag.time_aggregator(rule, n_workers=7, d=50, f=1, repeats=3) > 0


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 8),
    d=st.integers(1, 8),
    max_norm=st.floats(1e-3, 100.0),
    seed=st.integers(0, 100),
)
def test_clip_updates_bounds_norms(n: int, d: int, max_norm: float, seed: int) -> None:
    grads = 10 * torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    before = grads.clone()
    clipped = ag.clip_updates(grads, max_norm=max_norm)
    assert torch.equal(grads, before)
    assert torch.all(clipped.norm(dim=1) <= max_norm * (1 + 1e-5))
    small = grads.norm(dim=1) <= max_norm
    assert torch.allclose(clipped[small], grads[small])
    with pytest.raises(ValueError, match="max_norm"):
        ag.clip_updates(grads, max_norm=0.0)


@pytest.mark.parametrize("n", [1, 2, 5, 10, 17])
def test_batched_rules_equal_the_rule_on_each_round(n: int) -> None:
    from gdsec.aggregation import rules

    grads = torch.randn(4, 3, n, 6, generator=torch.Generator().manual_seed(n))
    assert torch.equal(rules._sorted_rows(grads), grads.sort(dim=-2).values)
    for name in ag.AGGREGATORS:
        limit = ag.max_tolerated(name, n)
        if limit < 0:
            continue  # Krum needs n >= 3
        f = min(1, limit)
        batched = rules._aggregate_rows(name, grads, f)
        single = torch.stack(
            [torch.stack([ag.aggregate(name, g, f=f) for g in block]) for block in grads]
        )
        assert batched.shape == (4, 3, 6) and torch.allclose(batched, single, atol=1e-6), name


def test_clip_rows_takes_one_limit_per_round() -> None:
    from gdsec.aggregation import rules

    grads = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0)) * 10
    limits = torch.tensor([0.5, float("inf"), 2.0])
    clipped = rules._clip_rows(grads, limits)
    assert torch.equal(clipped[1], grads[1])
    for i in (0, 2):
        assert torch.allclose(clipped[i], ag.clip_updates(grads[i], max_norm=limits[i].item()))
