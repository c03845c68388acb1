"""Unit and property tests for gdsec.aggregation: robust rules, Byzantine attacks, simulation, audit log."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gdsec import aggregation as ag
from gdsec import data, models, train


def honest_and_byzantine(n: int, f: int, d: int, seed: int, magnitude: float) -> tuple[torch.Tensor, torch.Tensor]:
    """n - f honest rows near 1, then f arbitrary rows of size ``magnitude``."""
    generator = torch.Generator().manual_seed(seed)
    honest = 1.0 + 0.1 * torch.randn(n - f, d, generator=generator)
    bad = magnitude * torch.randn(f, d, generator=generator)
    return honest, torch.cat([bad, honest])


workers = st.integers(1, 6).flatmap(lambda f: st.tuples(st.just(f), st.integers(2 * f + 1, 2 * f + 8)))


@settings(max_examples=60, deadline=None)
@given(fn=workers, d=st.integers(1, 12), seed=st.integers(0, 10_000), magnitude=st.floats(0.0, 1e6))
def test_median_and_trimmed_mean_stay_inside_honest_range(
    fn: tuple[int, int], d: int, seed: int, magnitude: float
) -> None:
    f, n = fn
    honest, grads = honest_and_byzantine(n, f, d, seed, magnitude)
    low, high = honest.min(dim=0).values - 1e-5, honest.max(dim=0).values + 1e-5
    for result in (ag.coordinate_median(grads), ag.trimmed_mean(grads, f=f)):
        assert result.shape == (d,)
        assert torch.all(result >= low) and torch.all(result <= high)


@settings(max_examples=60, deadline=None)
@given(f=st.integers(0, 4), extra=st.integers(1, 6), d=st.integers(1, 10), seed=st.integers(0, 10_000))
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
    assert torch.allclose(ag.trimmed_mean(grads, f=(n - 1) // 2), row)
    if n >= 3:
        assert torch.allclose(ag.krum(grads, f=(n - 3) // 2), row)
    assert torch.equal(grads, before)


def test_known_values() -> None:
    grads = torch.tensor([[0.0, 10.0], [1.0, 20.0], [2.0, 30.0], [100.0, -100.0]])
    assert torch.allclose(ag.mean(grads), torch.tensor([25.75, -10.0]))
    assert torch.allclose(ag.coordinate_median(grads), torch.tensor([1.5, 15.0]))
    assert torch.allclose(ag.trimmed_mean(grads, f=1), torch.tensor([1.5, 15.0]))
    odd = grads[:3]
    assert torch.allclose(ag.coordinate_median(odd), torch.tensor([1.0, 20.0]))


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
    grads = torch.randn(n, 2)
    if n > 2 * f + 2:
        ag.krum(grads, f=f)
    else:
        with pytest.raises(ValueError, match="f must be"):
            ag.krum(grads, f=f)


@pytest.mark.parametrize(
    "bad",
    [torch.randn(5), torch.randn(2, 3, 4), torch.zeros(3, 2, dtype=torch.int64), torch.tensor([[1.0, float("nan")]]),
     torch.zeros(0, 3), "grads"],
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


# ---------------------------------------------------------------- attacks and limits


@pytest.mark.parametrize("attack", ["none", "sign_flip", "noise", "scaled", "alie"])
def test_byzantine_gradients_shape_and_purity(attack: str) -> None:
    honest = torch.randn(7, 20, generator=torch.Generator().manual_seed(0))
    before = honest.clone()
    bad = ag.byzantine_gradients(honest, f=3, attack=attack, seed=1)
    assert bad.shape == (3, 20) and torch.isfinite(bad).all()
    assert torch.equal(honest, before)
    assert torch.equal(bad, ag.byzantine_gradients(honest, f=3, attack=attack, seed=1))
    assert ag.byzantine_gradients(honest, f=0, attack=attack).shape == (0, 20)


def test_byzantine_attack_directions() -> None:
    honest = 1.0 + 0.1 * torch.randn(8, 30, generator=torch.Generator().manual_seed(0))
    centre = honest.mean(0)
    assert torch.dot(ag.byzantine_gradients(honest, f=2, attack="sign_flip")[0], centre) < 0
    assert ag.byzantine_gradients(honest, f=2, attack="scaled")[0].norm() > 10 * centre.norm()
    alie = ag.byzantine_gradients(honest, f=2, attack="alie")[0]
    spread = honest.std(0, unbiased=False)
    assert torch.all(alie < centre) and torch.all(alie > centre - 3 * spread)


def test_alie_z_matches_paper_formula() -> None:
    # n = 50, f = 12: s = 50 // 2 + 1 - 12 = 14, z = Phi^-1((50 - 14) / 50) = Phi^-1(0.72)
    assert ag.alie_z(50, 12) == pytest.approx(0.5828, abs=1e-3)
    with pytest.raises(ValueError, match="f"):
        ag.alie_z(5, 0)


def test_byzantine_gradients_rejects_bad_arguments() -> None:
    honest = torch.randn(4, 3)
    with pytest.raises(ValueError, match="attack"):
        ag.byzantine_gradients(honest, f=1, attack="evil")
    with pytest.raises(ValueError, match="f"):
        ag.byzantine_gradients(honest, f=-1, attack="noise")
    with pytest.raises(ValueError, match="scale"):
        ag.byzantine_gradients(honest, f=1, attack="noise", scale=-1.0)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 8), d=st.integers(1, 8), max_norm=st.floats(1e-3, 100.0), seed=st.integers(0, 100))
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


# ---------------------------------------------------------------- simulation


@pytest.fixture(scope="module")
def digits() -> data.Split:
    return data.load_digits()


def run(digits: data.Split, model: torch.nn.Module | None = None, **kwargs: object) -> ag.Simulation:
    model = models.logistic_regression(seed=0) if model is None else model
    settings_ = {"n_workers": 8, "steps": 40, "lr": 0.5, "batch_size": 16, "eval_every": 40,
                 "eval_data": (digits.x_test, digits.y_test)} | kwargs
    return ag.simulate(model, digits.x_train, digits.y_train, **settings_)


def test_simulation_median_survives_what_breaks_the_mean(digits: data.Split) -> None:
    x_before, y_before = digits.x_train.clone(), digits.y_train.clone()
    clean = run(digits)
    broken = run(digits, f=2, attack="sign_flip", aggregator="mean")
    robust = run(digits, f=2, attack="sign_flip", aggregator="coordinate_median")
    assert clean.accuracy[-1] > 0.85
    assert broken.accuracy[-1] < 0.5 or broken.diverged
    assert robust.accuracy[-1] > 0.8
    assert torch.equal(digits.x_train, x_before) and torch.equal(digits.y_train, y_before), "simulate modified its data"
    assert clean.steps[0] == 0 and clean.steps[-1] == 40 and len(clean.accuracy) == len(clean.steps)
    assert clean.aggregation_seconds >= 0


def test_simulation_is_deterministic(digits: data.Split) -> None:
    a = run(digits, f=1, attack="noise", aggregator="krum", steps=10)
    b = run(digits, f=1, attack="noise", aggregator="krum", steps=10)
    assert a.accuracy == b.accuracy and torch.equal(a.final_params, b.final_params)


def test_simulation_targeted_attack_and_norm_limit(digits: data.Split) -> None:
    source = digits.x_train[digits.y_train == 7][:20]
    wanted = torch.full((len(source),), 1)
    seen: list[torch.Tensor] = []
    deployed = models.logistic_regression(seed=0)
    train.train(deployed, digits.x_train, digits.y_train, lr=0.5, epochs=30, batch_size=64, progress=False)
    kwargs = {"f": 2, "attack": "targeted", "attacker_data": (source, wanted), "steps": 30, "lr": 0.1}
    free = run(digits, deployed, **kwargs, on_step=lambda _step, grads: seen.append(grads))
    limited = run(digits, deployed, **kwargs, max_norm=1.0)
    assert len(seen) == 30 and seen[0].shape[0] == 8
    model = models.logistic_regression(seed=0)

    def success(theta: torch.Tensor) -> float:
        torch.nn.utils.vector_to_parameters(theta, model.parameters())
        with torch.no_grad():
            return (model(digits.x_test[digits.y_test == 7]).argmax(1) == 1).float().mean().item()

    assert success(torch.nn.utils.parameters_to_vector(deployed.parameters()).detach()) < 0.1
    assert success(free.final_params) > 0.8
    assert success(limited.final_params) < 0.3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"aggregator": "krum", "f": 3}, "f must be"),
        ({"attack": "targeted", "f": 1}, "attacker_data"),
        ({"f": 8}, "f"),
        ({"lr": 0.0}, "lr"),
        ({"aggregator": "best"}, "aggregator"),
        ({"attack": "gentle"}, "attack"),
        ({"batch_size": 10_000}, "batch_size"),
        ({"eval_data": None}, "eval_data"),
    ],
)
def test_simulation_rejects_bad_arguments(digits: data.Split, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        run(digits, **kwargs)


def test_simulation_rejects_bad_inputs(digits: data.Split) -> None:
    model = models.logistic_regression(seed=0)
    evaluation = (digits.x_test, digits.y_test)
    with pytest.raises(ValueError, match="x"):
        ag.simulate(model, digits.x_train * 2, digits.y_train, eval_data=evaluation)
    with pytest.raises(ValueError, match="y"):
        ag.simulate(model, digits.x_train, digits.y_train[:-1], eval_data=evaluation)


# ---------------------------------------------------------------- audit log and incentives


def test_hash_chain_detects_tampering() -> None:
    log: tuple = ()
    updates = [torch.full((4,), float(i)) for i in range(5)]
    for i, update in enumerate(updates):
        log = ag.append_update(log, f"w{i % 2}", update, round_index=i // 2)
    updates[0] += 100  # the caller's tensor changing later does not change the log
    assert ag.verify_log(log) is None
    assert [e.index for e in log] == list(range(5)) and log[1].previous == log[0].digest
    forged = list(log)
    forged[2] = forged[2]._replace(update=torch.zeros(4))
    assert ag.verify_log(forged) == 2
    dropped = log[:1] + log[2:]
    assert ag.verify_log(dropped) == 1
    renamed = list(log)
    renamed[3] = renamed[3]._replace(submitter="w9")
    assert ag.verify_log(renamed) == 3
    with pytest.raises(ValueError, match="submitter"):
        ag.append_update(log, "", torch.zeros(4))
    with pytest.raises(ValueError, match="update"):
        ag.append_update(log, "w1", [1.0])


def test_submitter_scores_single_out_the_odd_one() -> None:
    generator = torch.Generator().manual_seed(0)
    log: tuple = ()
    for round_index in range(5):
        direction = torch.randn(20, generator=generator)
        for worker in range(6):
            update = direction + 0.3 * torch.randn(20, generator=generator)
            log = ag.append_update(log, f"honest{worker}", update, round_index=round_index)
        log = ag.append_update(log, "attacker", -5 * direction, round_index=round_index)
    scores = ag.submitter_scores(log)
    assert scores["attacker"] < 0 < min(v for k, v in scores.items() if k != "attacker")
    with pytest.raises(ValueError, match="log"):
        ag.submitter_scores(())


def test_payoff() -> None:
    assert ag.payoff(0.5, claims=10, reward=2.0, submissions=4, fee=0.5) == pytest.approx(8.0)
    assert ag.payoff(0.5, claims=10, reward=2.0, submissions=4, fee=0.5, stake_lost=20.0) == pytest.approx(-12.0)
    with pytest.raises(ValueError, match="fee"):
        ag.payoff(0.5, claims=10, reward=2.0, submissions=4, fee=-1.0)
