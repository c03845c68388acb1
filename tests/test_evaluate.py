"""Tests for gdsec.attacks.evaluate (the AutoAttack-standard ensemble, per-example worst case, flags)
and gdsec.attacks.boundary (FAB-T and its exact projections). Budgets are small so the unit tier stays fast."""

from __future__ import annotations

import copy
import importlib.util
from dataclasses import replace

import pytest
import torch
from torch import nn

from gdsec import data, masking
from gdsec.attacks import ENSEMBLE, Budget, Member, apgd, evaluate, pgd
from gdsec.attacks.boundary import fab, project_on_hyperplane

from helpers import fit_mlp

FAST = Budget(steps=10, fab_steps=10, square_steps=200, draws=4, check_rows=40)
LABELS = [m.label for m in ENSEMBLE]
EPS = 0.1


@pytest.fixture(scope="module")
def rows(digits):
    return digits.x_test[:60], digits.y_test[:60]


@pytest.fixture(scope="module")
def honest(digits_mlp, rows):
    return evaluate(digits_mlp, *rows, EPS, budget=FAST)


def _names(flags: tuple[str, ...]) -> set[str]:
    return {f.split(":")[0] for f in flags}


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


# ------------------------------------------------------------------ the result is consistent


def test_result_is_a_consistent_per_row_worst_case(honest, digits_mlp, rows) -> None:
    x, y = rows
    e = honest
    assert e.n == 60 and e.robust.dtype == torch.bool and e.robust.shape == (60,)
    assert e.robust_accuracy == pytest.approx(e.robust.float().mean().item())
    assert (
        0.1 < e.robust_accuracy < e.clean_accuracy - 0.3
    )  # an attack that works, on a model that is not robust
    assert list(e.accuracy_after) == LABELS and list(e.budgets) == LABELS
    after = list(e.accuracy_after.values())
    assert (
        all(a >= b for a, b in zip(after, after[1:], strict=False))
        and after[-1] == e.robust_accuracy
    )
    assert e.ci95[0] < e.robust_accuracy < e.ci95[1]
    predicted = digits_mlp(e.x_adv).argmax(1)
    clean = digits_mlp(x).argmax(1)
    for i, by in enumerate(e.broken_by):
        assert (by is None) == bool(e.robust[i])
        assert (by == "clean") == bool(clean[i] != y[i])
        if by not in (None, "clean"):
            assert predicted[i] != y[i]
    assert torch.equal(e.x_adv[e.robust], x[e.robust])
    assert (e.x_adv - x).abs().max() <= EPS + 1e-6 and e.x_adv.min() >= 0 and e.x_adv.max() <= 1
    assert e.budgets["square_attack"] == {"p_init": 0.8, "steps": 200}
    assert e.budgets["apgd-t"] == {
        "norm": "inf",
        "targeted": True,
        "steps": 10,
        "restarts": 1,
        "targets": 9,
    }


def test_defaults_are_the_autoattack_budgets(digits_mlp, rows, monkeypatch) -> None:
    module = importlib.import_module("gdsec.attacks.evaluation")

    seen = {}

    def stub(member, m, x, y, eps, norm, budget, seed):
        return seen.setdefault(member.label, (member.budgeted(norm, budget), x))[1]

    monkeypatch.setattr(module.Member, "run", stub)
    e = evaluate(digits_mlp, *rows, EPS, budget=Budget(check_rows=0))
    assert seen["apgd-ce"][0] == {"norm": "inf", "loss": "ce", "steps": 100, "restarts": 1}
    assert seen["apgd-t"][0]["steps"] == 100 and seen["fab-t"][0]["steps"] == 100
    assert seen["square_attack"][0] == {"p_init": 0.8, "steps": 5000}
    assert e.robust_accuracy == e.clean_accuracy  # the stubbed attacks changed nothing


@pytest.mark.integration
def test_worst_case_is_no_weaker_than_any_single_attack(honest, digits_mlp, rows) -> None:
    singles = {a: evaluate(digits_mlp, *rows, EPS, attacks=(a,), budget=FAST) for a in LABELS}
    for name, single in singles.items():
        assert honest.robust_accuracy <= single.robust_accuracy, name
    assert not (
        honest.robust & ~singles["apgd-ce"].robust
    ).any()  # APGD-CE runs first on the same rows
    assert (
        honest.robust_accuracy
        <= _accuracy(digits_mlp, pgd(digits_mlp, *rows, EPS, steps=20), rows[1]) + 1e-6
    )


def test_each_attack_only_sees_the_rows_still_robust(digits_mlp, rows, monkeypatch) -> None:
    module = importlib.import_module("gdsec.attacks.evaluation")

    real, sizes = module.Member.run, []

    def spy(member, model, x, y, *args):
        sizes.append(len(x))
        return real(member, model, x, y, *args)

    monkeypatch.setattr(module.Member, "run", spy)
    e = evaluate(digits_mlp, *rows, EPS, budget=replace(FAST, check_rows=0))
    left = [round(e.clean_accuracy * e.n)] + [round(a * e.n) for a in e.accuracy_after.values()]
    assert sizes == [n for n in left[:-1] if n > 0] and sizes[0] > sizes[1]


@pytest.mark.integration
def test_the_same_seed_gives_the_same_result(honest, digits_mlp, rows) -> None:
    again = evaluate(digits_mlp, *rows, EPS, budget=FAST)
    assert torch.equal(again.x_adv, honest.x_adv) and again.broken_by == honest.broken_by


# ------------------------------------------------------------------ contract


@pytest.mark.integration
def test_inputs_mode_grads_and_global_rng_are_untouched(digits_cnn, rows) -> None:
    model = copy.deepcopy(digits_cnn).train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    x, y = rows[0][:20].clone(), rows[1][:20].clone()
    x0, y0, state = x.clone(), y.clone(), torch.get_rng_state()
    evaluate(model, x, y, EPS, budget=FAST)
    assert torch.equal(x, x0) and torch.equal(y, y0) and model.training
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters())


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"eps": -0.1}, "eps"),
        ({"norm": "1"}, "norm"),
        ({"seed": -1}, "seed"),
        ({"budget": {"steps": 10}}, "budget"),
        ({"steps": 10}, "steps"),
        ({"attacks": ()}, "attacks"),
        ({"attacks": "square_attack"}, "attacks"),
        ({"attacks": ("apgd-ce", "pgd")}, "attacks"),
        ({"attacks": ("square_attack", "square_attack")}, "attacks"),
        ({"attacks": ("square",)}, "attacks"),
        ({"attacks": ("square_attack",), "norm": "2"}, "square_attack"),
        ({"attacks": (Member("apgd"), Member("apgd", {"loss": "dlr"}))}, "distinct"),
        ({"n_iter": 100}, "n_iter"),
    ],
)
def test_bad_settings_raise_naming_them(kwargs: dict, named: str, digits_mlp, rows) -> None:
    args = {"eps": EPS, **kwargs}
    with pytest.raises(ValueError, match=named):
        evaluate(digits_mlp, *rows, **args)


def test_bad_inputs_raise_naming_them(digits_mlp, rows) -> None:
    x, y = rows
    with pytest.raises(ValueError, match="model"):
        evaluate("net", x, y, EPS)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="x"):
        evaluate(digits_mlp, x + 1, y, EPS)
    with pytest.raises(ValueError, match="y"):
        evaluate(digits_mlp, x, y[:-1], EPS)
    with pytest.raises(ValueError, match="y"):
        evaluate(digits_mlp, x, y + 10, EPS)


# ------------------------------------------------------------------ flags


@pytest.mark.integration
def test_no_flags_on_honest_models(honest, digits_cnn, rows, blobs_mlp) -> None:
    assert honest.flags == ()
    assert evaluate(digits_cnn, rows[0][:30], rows[1][:30], EPS, budget=FAST).flags == ()
    model, x, y = blobs_mlp
    assert evaluate(model, x, y, 0.05, budget=FAST).flags == ()


@pytest.mark.integration
def test_a_logit_scaled_copy_is_flagged_and_still_broken(honest, digits_mlp, rows) -> None:
    scaled = masking.defend(digits_mlp, "temperature", temperature=1e4)
    e = evaluate(scaled, *rows, EPS, budget=FAST)
    assert "zero-gradient" in _names(e.flags)
    assert "non-monotone" not in _names(e.flags), (
        "CE fails at eps and 2 eps alike: that is the zero-gradient flag's"
    )
    assert (
        e.accuracy_after["apgd-ce"] > e.clean_accuracy - 0.1
    )  # cross-entropy sees no gradient ...
    assert (
        abs(e.robust_accuracy - honest.robust_accuracy) <= 0.05
    )  # ... the scale-invariant attacks do


def test_accuracy_that_rises_with_eps_is_flagged(digits_mlp, rows) -> None:
    x, y = rows
    # honest gradients within 0.2 of the test digits, saturated (none) farther out: a bigger ball hides more
    trap = masking.defences.FarSaturation(digits_mlp, x, radius=0.2)
    assert "non-monotone" in _names(evaluate(trap, x, y, 0.15, budget=FAST).flags)
    assert "non-monotone" not in _names(evaluate(digits_mlp, x, y, 0.15, budget=FAST).flags)


@pytest.mark.integration
def test_a_randomised_model_is_flagged_and_evaluated_with_eot(digits_mlp, rows) -> None:
    def noisy() -> nn.Module:  # a fresh copy: RandomQuantize draws from its own seeded generator
        return nn.Sequential(masking.RandomQuantize(levels=16, noise=0.05, seed=0), digits_mlp)

    first = evaluate(noisy(), *rows, EPS, budget=FAST)
    assert "randomised" in _names(first.flags) and "EOT" in first.flags[0]
    again = evaluate(noisy(), *rows, EPS, budget=FAST)
    assert torch.equal(first.robust, again.robust) and torch.equal(first.x_adv, again.x_adv)

    class GlobalNoise(nn.Module):  # a model that draws from torch's global generator
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return digits_mlp((x + 0.05 * torch.rand_like(x)).clamp(0, 1))

    runs = [evaluate(GlobalNoise(), *rows, EPS, budget=FAST) for _ in range(2)]
    assert "randomised" in _names(runs[0].flags) and torch.equal(runs[0].x_adv, runs[1].x_adv)
    assert "randomised" not in _names(evaluate(digits_mlp, *rows, EPS, budget=FAST).flags)


@pytest.mark.integration
def test_zero_gradients_and_square_beating_white_box_are_flagged(digits_mlp, rows) -> None:
    quantised = masking.defend(digits_mlp, "quantize", levels=3)
    e = evaluate(quantised, *rows, EPS, budget=replace(FAST, square_steps=1000))
    assert {"zero-gradient", "square-beats-white-box"} <= _names(e.flags)
    assert e.accuracy_after["square_attack"] < e.accuracy_after["fab-t"] - 0.05


def test_square_must_break_more_than_a_fifth_of_a_percent_and_more_than_one_row() -> None:
    flags = importlib.import_module("gdsec.attacks.evaluation")._sequence_flags
    assert (
        flags({"apgd-t": 0.5, "square_attack": 0.5 - 1 / 450}, 450) == []
    )  # one row: 0.22 %, not enough
    assert len(flags({"apgd-t": 0.5, "square_attack": 0.5 - 2 / 450}, 450)) == 1
    assert flags({"apgd-t": 0.5, "square_attack": 0.5 - 20 / 10_000}, 10_000) == []  # 0.2 % exactly
    assert len(flags({"apgd-t": 0.5, "square_attack": 0.5 - 21 / 10_000}, 10_000)) == 1
    assert flags({"square_attack": 0.3, "apgd-t": 0.2}, 450) == []  # Square first: nothing to beat


@pytest.mark.integration
def test_probability_outputs_are_flagged(digits_mlp, rows) -> None:
    e = evaluate(nn.Sequential(digits_mlp, nn.Softmax(dim=1)), *rows, EPS, budget=FAST)
    assert "probabilities" in _names(e.flags)


# ------------------------------------------------------------------ shapes and classes


def test_tabular_inputs(blobs_mlp) -> None:
    model, x, y = blobs_mlp
    e = evaluate(model, x, y, 0.1, budget=FAST)
    assert e.x_adv.shape == x.shape and e.robust_accuracy < e.clean_accuracy


def test_two_classes_and_l2(digits) -> None:
    split = data.two_digits(3, 8)
    model = fit_mlp(split, hidden=16, batch_size=None)
    x, y = split.x_test[:60], split.y_test[:60]
    e = evaluate(model, x, y, 0.15, budget=FAST)
    assert e.flags == () and e.robust_accuracy < e.clean_accuracy - 0.2
    assert e.budgets["apgd-t"]["targets"] == 1 and e.budgets["fab-t"]["targets"] == 1
    assert e.robust_accuracy <= _accuracy(model, pgd(model, x, y, 0.15, steps=20), y) + 1e-6
    l2 = evaluate(model, x, y, 1.0, norm="2", budget=FAST)
    assert (
        list(l2.accuracy_after) == ["apgd-ce", "apgd-t", "fab-t"]
        and l2.robust_accuracy < l2.clean_accuracy
    )
    assert ((l2.x_adv - x).flatten(1).norm(dim=1) <= 1.0 + 1e-5).all()


# ------------------------------------------------------------------ FAB and its projections


@pytest.mark.parametrize(
    ("build", "named"),
    [
        (lambda: Budget(steps=0), "steps"),
        (lambda: Budget(fab_steps=0), "fab_steps"),
        (lambda: Budget(restarts=0), "restarts"),
        (lambda: Budget(square_steps=0), "square_steps"),
        (lambda: Budget(draws=0), "draws"),
        (lambda: Budget(noise_points=0), "noise_points"),
        (lambda: Budget(check_rows=-1), "check_rows"),
        (lambda: Budget(steps=2.5), "steps"),
        (lambda: Member("pgdd"), "attack"),
        (lambda: Member("deepfool"), "attack"),
        (lambda: Member("apgd", {"queries": 3}), "queries"),
    ],
)
def test_budget_and_members_are_checked_when_built(build, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        build()


def test_a_member_is_a_registry_entry_with_settings() -> None:
    assert [m.attack for m in ENSEMBLE] == ["apgd", "apgd", "fab", "square_attack"]
    assert LABELS == ["apgd-ce", "apgd-t", "fab-t", "square_attack"]
    stated = Budget(steps=7, fab_steps=3, square_steps=11, restarts=2)
    assert ENSEMBLE[2].budgeted("2", stated) == {
        "norm": "2",
        "targeted": True,
        "steps": 3,
        "restarts": 2,
    }
    assert ENSEMBLE[3].budgeted("inf", stated) == {"p_init": 0.8, "steps": 11}


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_projection_is_feasible_and_minimal(norm: str) -> None:
    linprog = pytest.importorskip("scipy.optimize").linprog
    gen = torch.Generator().manual_seed(0)
    p, w = (
        torch.rand(40, 6, generator=gen, dtype=torch.float64),
        torch.randn(40, 6, generator=gen, dtype=torch.float64),
    )
    b = (w * torch.rand(40, 6, generator=gen, dtype=torch.float64)).sum(
        1
    )  # a point of the box lies on each plane
    d = project_on_hyperplane(p, w, b, norm=norm)
    assert ((p + d) >= -1e-9).all() and ((p + d) <= 1 + 1e-9).all()
    assert ((w * (p + d)).sum(1) - b).abs().max() < 1e-6
    if (
        norm == "inf"
    ):  # min t s.t. -t <= d_i <= t, w . d = b - w . p, 0 <= p + d <= 1, as a linear program
        for i in range(5):
            cost = [0.0] * 6 + [1.0]
            rows = [[(1.0 if j == k else 0.0) for j in range(6)] + [-1.0] for k in range(6)]
            rows += [[(-1.0 if j == k else 0.0) for j in range(6)] + [-1.0] for k in range(6)]
            bounds = [(-float(p[i, k]), 1 - float(p[i, k])) for k in range(6)] + [(0, None)]
            best = linprog(
                cost,
                A_ub=rows,
                b_ub=[0.0] * 12,
                A_eq=[w[i].tolist() + [0.0]],
                b_eq=[float(b[i] - w[i] @ p[i])],
                bounds=bounds,
            )
            assert abs(d[i].abs().max().item() - best.fun) < 1e-6
    else:  # any other feasible step is no shorter: compare with random feasible points of the plane in the box
        other = torch.rand(40, 6, generator=gen, dtype=torch.float64)
        along = project_on_hyperplane(other, w, b, norm="2") + other - p
        assert (d.norm(dim=1) <= along.norm(dim=1) + 1e-9).all()


@pytest.mark.integration
def test_fab_finds_small_adversarial_examples(digits_mlp, rows) -> None:
    x, y = rows
    x_fab = fab(digits_mlp, x, y, EPS, steps=20)
    assert (x_fab - x).abs().max() <= EPS + 1e-6
    fab_acc = _accuracy(digits_mlp, x_fab, y)
    assert fab_acc <= _accuracy(digits_mlp, apgd(digits_mlp, x, y, EPS, steps=20), y) + 0.05
    untargeted = fab(digits_mlp, x, y, EPS, targeted=False, steps=20)
    assert _accuracy(digits_mlp, untargeted, y) < _accuracy(digits_mlp, x, y) - 0.3
    broken = digits_mlp(x_fab).argmax(1) != y
    assert torch.equal(x_fab[~broken], x[~broken])  # rows it cannot fool within eps come back clean


# ------------------------------------------------------------------ against the reference


@pytest.mark.integration  # installs torchattacks from PyPI on first use
def test_no_weaker_than_torchattacks(digits_mlp, rows, torchattacks) -> None:
    x, y = rows
    model = copy.deepcopy(digits_mlp)
    with torch.random.fork_rng(devices=[]):
        robust = torch.ones(len(x), dtype=torch.bool)
        for attack in (
            torchattacks.APGD(model, eps=EPS, steps=20, loss="ce"),
            torchattacks.APGDT(model, eps=EPS, steps=20, n_classes=10),
        ):
            rows_left = robust.nonzero().squeeze(1)
            robust[rows_left] &= model(attack(x[rows_left], y[rows_left])).argmax(1) == y[rows_left]
    ours = evaluate(
        model, x, y, EPS, attacks=("apgd-ce", "apgd-t"), budget=Budget(steps=20, check_rows=0)
    )
    assert ours.robust_accuracy <= robust.float().mean().item() + 0.02


def test_a_decoy_gradient_is_flagged_and_attacked_by_decisions(
    honest, digits_mlp, digits_cnn, rows
):
    decoy = masking.DecoyGradient(digits_mlp, [digits_cnn])
    tiny = Budget(steps=3, fab_steps=3, square_steps=30, check_rows=0)
    e = evaluate(decoy, rows[0][:12], rows[1][:12], EPS, budget=tiny)
    assert {"inconsistent-gradient", "flat-output"} <= _names(e.flags), e.flags
    # after the default ensemble (Square last) the decision-based HopSkipJump joins
    assert list(e.accuracy_after) == [*LABELS, "hop_skip_jump"]
    assert e.budgets["hop_skip_jump"] == {"norm": "inf", "queries": 30}
    chosen = evaluate(decoy, rows[0][:12], rows[1][:12], EPS, budget=tiny, attacks=("apgd-ce",))
    assert list(chosen.accuracy_after) == ["apgd-ce"]  # members chosen: exactly those run
    assert not _names(honest.flags) & {"inconsistent-gradient", "flat-output"}
    assert "hop_skip_jump" not in honest.accuracy_after


class _Jumping(nn.Module):
    """``5 * onehot(argmax model) + 0.1 * smooth``: model's decisions, smooth scores that jump there."""

    def __init__(self, model: nn.Module, smooth: nn.Module) -> None:
        super().__init__()
        self.model, self.smooth = model, smooth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(x)
        return 5.0 * nn.functional.one_hot(z.argmax(1), 10).to(z.dtype) + 0.1 * self.smooth(x)


def test_scores_that_jump_at_the_boundary_are_flagged_and_attacked_by_decisions(
    digits_mlp, digits_cnn, rows
):
    jumping = _Jumping(digits_mlp, digits_cnn)
    tiny = Budget(steps=2, fab_steps=2, square_steps=10, check_rows=0)
    e = evaluate(jumping, rows[0][:6], rows[1][:6], EPS, budget=tiny)
    assert "discontinuous-scores" in _names(e.flags), e.flags
    assert not _names(e.flags) & {"inconsistent-gradient", "flat-output"}  # the older flags miss it
    assert list(e.accuracy_after) == [*LABELS, "hop_skip_jump"]


def test_float64_logits(digits_mlp, rows) -> None:
    class Double(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return digits_mlp(x).double()

    x, y = rows[0][:20], rows[1][:20]
    budget = replace(FAST, check_rows=0)
    e = evaluate(Double(), x, y, EPS, budget=budget, attacks=("fab-t",))  # FAB mixed the dtypes
    plain = evaluate(digits_mlp, x, y, EPS, budget=budget, attacks=("fab-t",))
    assert e.flags == () and e.robust_accuracy == plain.robust_accuracy


class _NoGradientPath(nn.Module):
    """``model`` with no gradient path to its input: computed under ``torch.no_grad`` or on ``x.detach()``."""

    def __init__(self, model: nn.Module, how: str) -> None:
        super().__init__()
        self.model, self.how = model, how

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.how == "detach":
            return self.model(x.detach())
        with torch.no_grad():
            return self.model(x)


@pytest.mark.parametrize("how", ["no_grad", "detach"])
def test_no_gradient_path_is_measured_by_the_gradient_free_members(digits_mlp, rows, how) -> None:
    x, y = rows[0][:10], rows[1][:10]
    masked = _NoGradientPath(digits_mlp, how)
    tiny = Budget(steps=2, fab_steps=2, square_steps=40, check_rows=0)
    e = evaluate(masked, x, y, EPS, budget=tiny)  # FAB's autograd.grad raised here
    correct = round(e.clean_accuracy * len(x))
    assert any(f.startswith(f"zero-gradient: {correct} of {correct} ") for f in e.flags), e.flags
    assert list(e.accuracy_after) == [*LABELS, "hop_skip_jump"]
    assert e.accuracy_after["fab-t"] == e.clean_accuracy  # the gradient members move nothing
    assert set(e.broken_by) <= {None, "clean", "square_attack", "hop_skip_jump"}
    assert torch.equal(fab(masked, x, y, EPS, steps=2, targeted=False), x)


def test_every_member_takes_float64_logits(digits_mlp, rows) -> None:
    class Double(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return digits_mlp(x).double()

    x, y = rows[0][:10], rows[1][:10]
    tiny = Budget(steps=2, fab_steps=2, square_steps=20, check_rows=0)
    e = evaluate(Double(), x, y, EPS, budget=tiny)  # the whole default ensemble
    assert list(e.accuracy_after) == LABELS and e.flags == ()
    assert e.robust_accuracy == evaluate(digits_mlp, x, y, EPS, budget=tiny).robust_accuracy
