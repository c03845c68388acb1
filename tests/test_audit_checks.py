"""Unit tests for the five audit checks on models built here, images and tabular rows: a randomised or
zero-gradient defence is at least "medium" on robustness verification and adversarial testing, a
logit-scaled copy is rated like its original, a dark-trigger backdoor is "high" on training security
and honest data "low"."""

from __future__ import annotations

import copy

import pytest
import torch

from gdsec import audit, data, masking, models, train
from gdsec.attacks import Budget

from helpers import fit_mlp

FAST = dict(
    eps_grid=(0.1,),
    n_eval=120,
    budget=Budget(steps=8, fab_steps=8, square_steps=100, draws=4, check_rows=40),
    sharpness_rows=200,
)
ORDER = audit.SEVERITIES.index


def _dark_backdoor(
    split: data.Split, features: list[int], target: int = 0, fraction: float = 0.05
) -> data.Split:
    """``split`` with ``fraction`` of its training rows of other classes stamped dark (features at 0) and relabelled."""
    x, y = split.x_train.clone(), split.y_train.clone()
    rows = (
        (y != target)
        .nonzero()
        .flatten()[
            torch.randperm(int((y != target).sum()), generator=torch.Generator().manual_seed(0))
        ]
    )
    rows = rows[: int(fraction * len(y))]
    flat = x.flatten(1)
    flat[rows[:, None], torch.tensor(features)] = 0.0
    y[rows] = target
    return data.Split(flat.reshape(x.shape), y, split.x_test, split.y_test)


@pytest.fixture(scope="module", params=["images", "tabular"])
def case(request, digits, digits_mlp):
    """(split, honest model, references) for digit images (N, 1, 8, 8) and the same digits as tabular rows (N, 64)."""
    if request.param == "images":
        split, honest = digits, digits_mlp
    else:
        split = data.Split(
            digits.x_train.flatten(1), digits.y_train, digits.x_test.flatten(1), digits.y_test
        )
        honest = fit_mlp(split, seed=1)
    return request.param, split, honest, audit.reference_models(split, n_seeds=3)


@pytest.mark.integration
def test_randomised_and_zero_gradient_defences_are_at_least_medium(case):
    _, split, honest, references = case
    config = audit.AuditConfig(references=references, **FAST)
    for kind in ("random", "quantize"):
        defended = masking.defend(copy.deepcopy(honest), kind, noise=0.2, levels=3, seed=0)
        verification = audit.audit_robustness_verification(defended, split, config)
        testing = audit.audit_adversarial_testing(defended, split, config)
        assert ORDER(verification.severity) >= 1 and ORDER(testing.severity) >= 1, (
            kind,
            verification.summary,
            testing.summary,
        )
        evidence = verification.evidence
        assert evidence["zero_gradient_fraction"] == 1.0 and evidence["bpda"].startswith(
            "submodules of the nn.Module tree: straight-through at 0"
        ), evidence["bpda"]
        assert evidence["randomised"] == (kind == "random") and testing.evidence["flags"]
        after = evidence["accuracy_after_adaptive"]
        assert after["bpda"] < evidence["whitebox_accuracy"] - 0.05, (
            "BPDA must break rows the white-box attacks missed"
        )
        assert {"bpda", "transfer", "distilled"} <= set(after) and not evidence["unreached"]
    plain = audit.audit_robustness_verification(honest, split, config)
    assert plain.severity == "low" and not plain.evidence["signs"], plain.summary
    assert list(plain.evidence["accuracy_after_adaptive"]) == ["transfer"]


class _Hidden(torch.nn.Module):
    """Quantisation inside ``forward``: no layer to swap, but a node of the exported graph."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(torch.round(x * 2) / 2)


class _Opaque(torch.nn.Module):
    """Quantisation outside torch (NumPy): no hook, no graph, no gradient; only a surrogate reaches it."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(torch.from_numpy((x.detach().numpy() * 2).round() / 2).to(x.dtype))


@pytest.mark.integration
def test_a_quantiser_hidden_in_forward_gets_bpda_and_an_opaque_one_stays_medium(case):
    _, split, honest, references = case
    config = audit.AuditConfig(references=references, **FAST)
    hidden = audit.audit_robustness_verification(_Hidden(honest), split, config)
    layer = audit.audit_robustness_verification(masking.defend(honest, "quantize"), split, config)
    assert hidden.evidence["bpda"].startswith("graph exported from the module: straight-through")
    assert "round" in hidden.evidence["bpda"] and hidden.severity == layer.severity, hidden.summary
    after = [f.evidence["accuracy_after_adaptive"]["bpda"] for f in (hidden, layer)]
    assert after[0] == after[1] < hidden.evidence["whitebox_accuracy"], (
        "BPDA through the graph node is BPDA through the layer",
        after,
    )
    lenient = audit.AuditConfig(
        references=references, **{**FAST, "adaptive_tol": 1.0}
    )  # no gap can reach "high"
    opaque = audit.audit_robustness_verification(_Opaque(honest), split, lenient)
    assert opaque.severity == "medium" and "zero-gradient" in opaque.evidence["unreached"], (
        opaque.summary
    )
    assert (
        opaque.evidence["bpda"].startswith("not built") and "distilled" in opaque.evidence["bpda"]
    ), opaque.evidence["bpda"]
    assert "distilled" in opaque.evidence["accuracy_after_adaptive"]
    located = masking.defend(honest, "quantize", levels=3)
    assert audit.audit_robustness_verification(located, split, lenient).severity == "low", (
        "BPDA reached the layer"
    )


@pytest.mark.integration
def test_honest_models_stay_low_without_a_false_sign(digits, digits_cnn):
    two = data.two_digits()
    cases = {"cnn": (digits, digits_cnn), "two classes": (two, fit_mlp(two))}
    for name, (split, model) in cases.items():
        config = audit.AuditConfig(references=audit.reference_models(split, n_seeds=1), **FAST)
        finding = audit.audit_robustness_verification(model, split, config)
        assert finding.severity == "low" and not finding.evidence["signs"], (name, finding.summary)


class _Awkward(torch.nn.Module):
    """An honest model with an unused parameter, a buffer, dropout and batch norm (eval) and float64 logits."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.unused = inner, torch.nn.Linear(64, 2)
        self.norm, self.drop = torch.nn.BatchNorm1d(10), torch.nn.Dropout(0.5)
        self.register_buffer("offset", torch.zeros(10))

    def forward(self, x):
        return (self.drop(self.norm(self.inner(x))) + self.offset).double()


@pytest.mark.integration
def test_awkward_models_are_audited_without_crashing(digits, digits_mlp):
    config = audit.AuditConfig(references=audit.reference_models(digits, n_seeds=1), **FAST)
    for model in (
        _Awkward(copy.deepcopy(digits_mlp)).eval(),
        masking.defend(_Awkward(copy.deepcopy(digits_mlp)).eval(), "quantize"),
    ):
        before = {k: v.clone() for k, v in model.state_dict().items()}
        modes = [m.training for m in model.modules()]
        finding = audit.audit_robustness_verification(model, digits, config)
        assert finding.severity in audit.SEVERITIES and modes == [
            m.training for m in model.modules()
        ]
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
        assert (finding.severity == "high") == isinstance(model, torch.nn.Sequential), (
            finding.summary
        )


@pytest.mark.integration
def test_a_logit_scaled_copy_is_rated_like_its_original(case):
    _, split, honest, references = case
    scaled = masking.defend(honest, "temperature", temperature=1000.0)
    reports = [audit.audit(m, split, references=references, **FAST) for m in (honest, scaled)]
    assert reports[0].severities == reports[1].severities
    original, copy_ = (r.finding("adversarial_testing").evidence for r in reports)
    assert (
        abs(original["robust_accuracy"] - copy_["robust_accuracy"]) <= 0.02
        and copy_["flags"] == original["flags"]
    )
    sharp = [r.finding("convergence_properties").evidence["sharpness"] for r in reports]
    assert sharp[1] == pytest.approx(sharp[0], rel=1e-2)
    whitebox = [r.finding("gradient_exposure").evidence["whitebox_pgd_accuracy"] for r in reports]
    assert abs(whitebox[0] - whitebox[1]) <= 0.02


@pytest.mark.integration
def test_a_dark_trigger_backdoor_is_high_and_honest_data_low(case):
    layout, split, honest, references = case
    centre = [27, 28, 35, 36]  # the central 2x2 pixels of an 8x8 digit: ink removed
    poisoned = _dark_backdoor(split, centre)
    backdoored = fit_mlp(poisoned)
    config = audit.AuditConfig(references=references, **FAST)
    found = audit.audit_training_security(backdoored, poisoned, config)
    clean = audit.audit_training_security(honest, split, config)
    assert found.severity == "high", found.summary
    assert found.evidence["trigger_class"] == 0 and set(centre) <= set(
        found.evidence["trigger_features"]
    )
    assert (
        max(
            found.evidence["trigger_values"][found.evidence["trigger_features"].index(i)]
            for i in centre
        )
        < 0.1
    )
    assert clean.severity == "low", clean.summary
    assert clean.evidence["excess_over_clean"] < config.trigger_margin - 0.05, (
        "honest data must stay low with margin"
    )


@pytest.mark.integration
def test_convergence_flags_an_unconverged_model_scale_free(digits, digits_mlp):
    references = audit.reference_models(digits, n_seeds=2)
    config = audit.AuditConfig(references=references, sharpness_rows=200)
    early = models.mlp(seed=3)
    train.train(
        early,
        digits.x_train,
        digits.y_train,
        optimizer="sgd",
        lr=0.01,
        epochs=1,
        batch_size=64,
        progress=False,
    )
    unconverged = audit.audit_convergence_properties(early, digits, config)
    honest = audit.audit_convergence_properties(digits_mlp, digits, config)
    assert honest.severity == "low" and unconverged.severity == "medium", unconverged.summary
    assert honest.evidence["temperature"] > 0 and 0 < honest.evidence["sharpness"]
    assert all(p.grad is None for p in digits_mlp.parameters())


@pytest.mark.integration
def test_every_finding_names_its_budgets_version_and_sample_size(digits, digits_mlp):
    references = audit.reference_models(digits, n_seeds=1)
    report = audit.audit(digits_mlp, digits, references=references, **FAST)
    for finding in report.findings:
        assert finding.evidence["gdsec_version"] == report.settings["gdsec_version"]
        assert finding.evidence["n"] > 0 and isinstance(finding.evidence["budgets"], dict)
    assert report.finding("adversarial_testing").evidence["n"] == FAST["n_eval"]
    assert (
        report.finding("adversarial_testing").evidence["budgets"]["steps"] == FAST["budget"].steps
    )


def _two_class_logits(x: torch.Tensor, third: bool = False) -> torch.nn.Module:
    """An untrained two-class MLP, optionally with a third constant logit far below the others."""
    net = models.mlp(64, 2, hidden=8, seed=0).eval()
    if not third:
        return net
    return torch.nn.Sequential(net, torch.nn.ConstantPad1d((0, 1), -50.0)).eval()


def test_the_audit_view_keeps_a_two_class_gradient_and_ignores_scale():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 1, 8, 8, generator=g)
    net = _two_class_logits(x)
    with (
        torch.no_grad()
    ):  # labels the model gets 75 % right, so the calibrated temperature is finite
        y = torch.where(torch.arange(40) % 4 == 0, 1 - net(x).argmax(1), net(x).argmax(1))
    view = audit.NormalisedLogits(net, x, y)
    scaled = audit.NormalisedLogits(masking.defend(net, "temperature", temperature=1000.0), x, y)
    assert torch.allclose(view(x), scaled(x), rtol=1e-4, atol=1e-5)
    assert view.temperature > 0 and scaled.temperature == pytest.approx(1000 * view.temperature)
    probe = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(view(probe), y), probe)
    assert (grad.flatten(1).abs().amax(1) > 1e-6).all()  # the per-row unit norm made these 0
    third = audit.NormalisedLogits(_two_class_logits(x, third=True), x, y)
    assert torch.allclose(third(x)[:, :2], view(x), rtol=1e-4, atol=1e-5)
    rowless = audit.NormalisedLogits(net)  # no trusted rows: one detached scale per batch
    probe = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(rowless(probe)[:, 0].sum(), probe)
    assert (grad.flatten(1).abs().amax(1) > 1e-6).all()
    with pytest.raises(ValueError, match="y"):
        audit.NormalisedLogits(net, x)
