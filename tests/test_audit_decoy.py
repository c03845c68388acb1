"""The decoy wrapper (gdsec.masking.DecoyGradient) and how the audit's flags rate it."""

from __future__ import annotations

import pytest
import torch

from gdsec import attacks, audit, data, masking, models
from gdsec.attacks import Budget
from gdsec.train import predict

from helpers import fit_mlp

QUESTIONS = ["gradient_exposure", "adversarial_testing"]
ORDER = audit.SEVERITIES.index


def _small(seed: int, classes: int = 10) -> torch.nn.Module:
    """An untrained seeded MLP (8x8 inputs): decisions and gradients are all the tests need."""
    return models.mlp(64, classes, hidden=16, seed=seed).eval()


def test_decoy_keeps_decisions_and_returns_the_decoys_gradient():
    honest, decoys = _small(0), [_small(10), _small(11)]
    wrapper = masking.DecoyGradient(honest, decoys)
    x = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out = wrapper(x)
    assert torch.equal(out.argmax(1), honest(x).argmax(1))
    weights = torch.rand(20, 10, generator=torch.Generator().manual_seed(1))
    xw = x.clone().requires_grad_(True)
    (got,) = torch.autograd.grad((wrapper(xw) * weights).sum(), xw)
    xd = x.clone().requires_grad_(True)
    mean = torch.stack([d(xd) for d in decoys]).mean(0)
    (want,) = torch.autograd.grad((mean * weights).sum(), xd)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-7)
    # the honest model's parameters stay in the graph, with zero gradient
    params = list(honest.parameters())
    grads = torch.autograd.grad(wrapper(x).sum(), params)
    assert all(g is not None and torch.equal(g, torch.zeros_like(g)) for g in grads)


def test_decoy_scores_are_flat():
    wrapper = masking.DecoyGradient(_small(0), [_small(10)], scale=5.0, offset=0.5)
    out = wrapper(torch.rand(7, 1, 8, 8, generator=torch.Generator().manual_seed(2))).detach()
    onehot = torch.nn.functional.one_hot(out.argmax(1), 10).float()
    assert torch.allclose(out - torch.linspace(0, 0.5, 10), 5.0 * onehot, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"decoys": []}, "decoys"),
        ({"decoys": "not a model"}, "decoys"),
        ({"scale": 0.0}, "scale"),
        ({"offset": -1.0}, "offset"),
        ({"scale": 1.0, "offset": 1.0}, "offset"),
    ],
)
def test_decoy_validates(kwargs, name):
    args = {"decoys": [_small(1)], **kwargs}
    with pytest.raises(ValueError, match=name):
        masking.DecoyGradient(_small(0), **args)


def test_decoy_rejects_decoys_of_another_shape():
    wrapper = masking.DecoyGradient(_small(0), [_small(1, classes=3)])
    with pytest.raises(ValueError, match="decoys"):
        wrapper(torch.rand(2, 1, 8, 8))


# --- the audit on the decoy, its honest twin, two classes, rescaling, odd models (integration) ---

FAST = dict(
    eps_grid=(0.1,),
    n_eval=100,
    budget=Budget(steps=10, fab_steps=10, square_steps=200, draws=4, check_rows=50),
)
MASKING = {"randomised", "zero-gradient", "inconsistent-gradient", "flat-output"}


def _flag_names(finding) -> set[str]:
    return {f.split(":")[0] for f in finding.evidence["flags"]}


def _q12(model: torch.nn.Module, split: data.Split):
    report = audit.audit(model, split, questions=QUESTIONS, **FAST)
    return report.finding("gradient_exposure"), report.finding("adversarial_testing")


@pytest.mark.integration
def test_the_decoy_is_rated_like_its_honest_twin_or_worse(digits, digits_mlp, digits_cnn):
    honest_q1, honest_q2 = _q12(digits_mlp, digits)
    decoy_q1, decoy_q2 = _q12(masking.DecoyGradient(digits_mlp, [digits_cnn]), digits)
    assert (decoy_q1.severity, decoy_q2.severity) == ("high", "high"), (decoy_q1, decoy_q2)
    assert {"inconsistent-gradient", "flat-output"} <= _flag_names(decoy_q2)
    assert {"inconsistent-gradient", "flat-output"} <= set(decoy_q1.evidence["flags"])
    assert decoy_q1.evidence["decision_based_accuracy"] <= decoy_q1.evidence["clean_accuracy"]
    assert "hop_skip_jump" in decoy_q2.evidence["accuracy_after_attack"]
    assert not _flag_names(honest_q2) & MASKING and honest_q1.evidence["flags"] == []
    assert ORDER(decoy_q2.severity) >= ORDER(honest_q2.severity)


@pytest.mark.integration
def test_an_honest_two_class_model_gets_no_masking_warning_and_its_own_deepfool():
    split = data.two_digits()
    model = fit_mlp(split, hidden=32)
    q1, q2 = _q12(model, split)
    assert not _flag_names(q2) & MASKING and q1.evidence["flags"] == [], (q1, q2)
    rows = FAST["budget"].check_rows
    x = split.x_test[:rows]
    x_df = attacks.deepfool(model, x)
    flipped = predict(model, x_df) != predict(model, x)
    own = attacks.perturbation_norm(x, x_df, norm="2")[flipped].median().item()
    assert q2.evidence["deepfool_median_l2"] == pytest.approx(own, rel=0.05)


@pytest.mark.integration
def test_a_logit_scaled_copy_gets_identical_findings(digits, digits_mlp):
    scaled = masking.defend(digits_mlp, "temperature", temperature=1000.0)
    for original, copy_ in zip(_q12(digits_mlp, digits), _q12(scaled, digits), strict=True):
        assert copy_.severity == original.severity
        for key, value in original.evidence.items():
            if isinstance(value, float) and key != "temperature":
                assert copy_.evidence[key] == pytest.approx(value, abs=0.011, nan_ok=True), key


class _Odd(torch.nn.Module):
    """``net`` with an unused parameter, a buffer, and float64 logits."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.unused = net, torch.nn.Linear(64, 2)
        self.register_buffer("shift", torch.zeros(10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.net(x) + self.shift).double()


@pytest.mark.integration
def test_convergence_works_on_unused_parameters_buffers_and_float64(digits, digits_mlp):
    references = audit.reference_models(digits, n_seeds=2)
    settings = dict(questions=["convergence_properties"], references=references, sharpness_rows=200)
    plain = audit.audit(digits_mlp, digits, **settings).finding("convergence_properties")
    odd = audit.audit(_Odd(digits_mlp), digits, **settings).finding("convergence_properties")
    assert odd.severity == plain.severity
    assert odd.evidence["sharpness"] == pytest.approx(plain.evidence["sharpness"], rel=1e-3)
