"""Gradient masking (gdsec.masking): the defences mask, BPDA/EOT/transfer see through, the checks flag."""

import functools

import ipywidgets as widgets
import matplotlib.pyplot as plt
import pytest
import torch

from gdsec import attacks, data, masking, models, train
from gdsec.widgets import masking as factory

EPS = 0.15


@pytest.fixture(scope="module")
def setting():
    """A fast tiny setup: 600 training digits, 150 test digits, small MLPs."""
    split = data.load_digits()
    x_train, y_train = split.x_train[:600], split.y_train[:600]
    x_test, y_test = split.x_test[:150], split.y_test[:150]

    def fit(x, seed=0, **kwargs):
        model = models.mlp(hidden=48, seed=seed)
        train.train(model, x, y_train, lr=0.1, epochs=15, batch_size=32, progress=False, **kwargs)
        return model

    base = fit(x_train)
    quantized = masking.defend(fit(masking.Quantize(3)(x_train)), "quantize", levels=3)
    saturated = masking.defend(base, "temperature", temperature=1000.0)
    robust = fit(x_train, adversary=functools.partial(attacks.pgd, eps=EPS, steps=5))
    surrogate = fit(x_train, seed=1)
    return {
        "x": x_test, "y": y_test, "base": base, "quantized": quantized, "saturated": saturated,
        "robust": robust, "surrogate": surrogate,
    }


def test_quantize_levels_and_zero_gradient():
    x = torch.rand(5, 1, 8, 8)
    q = masking.Quantize(3)(x)
    assert set(q.unique().tolist()) <= {0.0, 0.5, 1.0}
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(masking.Quantize(3)(x).sum(), x)
    assert torch.equal(grad, torch.zeros_like(grad))


def test_random_quantize_is_random_per_call_and_reproducible_from_its_seed():
    x = torch.full((200, 4), 0.5)
    layer = masking.RandomQuantize(3, 0.3, seed=4)
    a, b = layer(x), layer(x)
    assert not torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 0.5, 1.0}
    again = masking.RandomQuantize(3, 0.3, seed=4)
    assert torch.equal(again(x), a) and torch.equal(again(x), b)
    assert not torch.equal(masking.RandomQuantize(3, 0.3, seed=5)(x), a)
    state = torch.random.get_rng_state()
    layer(x)
    assert torch.equal(torch.random.get_rng_state(), state), "the global RNG must not be used"
    defended = masking.defend(torch.nn.Identity(), "random", noise=0.3, seed=4)
    assert torch.equal(defended(x), a)


def test_defences_mask_the_gradient_but_keep_predictions(setting):
    x, y = setting["x"], setting["y"]
    assert masking.input_gradient_zero_fraction(setting["base"], x, y) == 0.0
    assert masking.input_gradient_zero_fraction(setting["quantized"], x, y) == 1.0
    assert masking.input_gradient_zero_fraction(setting["saturated"], x, y) > 0.7
    assert torch.equal(setting["saturated"](x).argmax(1), setting["base"](x).argmax(1))
    assert setting["saturated"][0] is setting["base"]  # the classifier is shared, not copied


def test_whitebox_attacks_fail_and_bpda_transfer_succeed(setting):
    x, y = setting["x"], setting["y"]
    for name in ("quantized", "saturated"):
        model = setting[name]
        whitebox = attacks.robust_accuracy(model, x, y, "pgd", eps=EPS, steps=10, seed=0)
        bpda = attacks.robust_accuracy(model, x, y, lambda m, xs, ys: attacks.pgd(masking.bpda(m), xs, ys, EPS, steps=10, seed=0))
        moved = attacks.robust_accuracy(model, x, y, masking.transfer(setting["surrogate"], attacks.pgd, eps=EPS, steps=10, seed=0))
        assert whitebox > 0.8, name
        assert bpda < whitebox - 0.3 and moved < whitebox - 0.2, name


def test_bpda_keeps_the_forward_pass_and_restores_a_gradient(setting):
    x, y = setting["x"][:20], setting["y"][:20]
    stand_in = masking.bpda(setting["quantized"])
    assert torch.equal(stand_in(x), setting["quantized"](x))
    assert masking.input_gradient_zero_fraction(stand_in, x, y) == 0.0
    assert torch.equal(masking.bpda(setting["saturated"])(x), setting["base"](x))


def test_eot_averages_random_draws():
    class Noisy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.generator = torch.Generator().manual_seed(0)

        def forward(self, x):
            return x + torch.randn(x.shape, generator=self.generator)

    averaged = masking.eot(Noisy(), samples=400)(torch.zeros(3, 2))
    assert averaged.abs().max() < 0.25


def test_sanity_checks_flag_masked_defences_but_not_robust_model(setting):
    x, y, surrogate = setting["x"], setting["y"], setting["surrogate"]
    kwargs = {"eps": EPS, "steps": 10, "queries": 200}
    for name in ("quantized", "saturated"):
        report = masking.sanity_checks(setting[name], x, y, surrogate=surrogate, **kwargs)
        assert report.masked, name
        assert not report.checks["whitebox_beats_blackbox"] and not report.checks["unbounded_reaches_zero"], name
        assert report.evidence["zero_gradient_fraction"] > 0.7
    for name in ("robust", "base"):
        report = masking.sanity_checks(setting[name], x, y, surrogate=surrogate, **kwargs)
        assert not report.masked, (name, report)
        assert all(report.checks.values()) and report.evidence["pgd_unbounded"] <= 0.05
    report = masking.sanity_checks(setting["robust"], x, y, **kwargs)
    assert "whitebox_beats_transfer" not in report.checks and set(report.evidence) >= {"fgsm", "pgd", "square", "clean"}


def test_sanity_checks_leave_model_state_alone(setting):
    model, x, y = setting["base"], setting["x"][:30], setting["y"][:30]
    model.train()
    masking.sanity_checks(model, x, y, eps=EPS, steps=2, queries=5)
    assert model.training and all(p.grad is None for p in model.parameters())
    model.eval()


@pytest.mark.parametrize(
    "call",
    [
        lambda s: masking.Quantize(1),
        lambda s: masking.RandomQuantize(3, noise=1.5),
        lambda s: masking.RandomQuantize(3, seed=-1),
        lambda s: masking.defend(s["base"], "random", seed=1.5),
        lambda s: masking.Temperature(0.0),
        lambda s: masking.defend(s["base"], "jpeg"),
        lambda s: masking.defend("model", "quantize"),
        lambda s: masking.bpda(torch.nn.Linear(2, 2)),
        lambda s: masking.eot(s["base"], samples=0),
        lambda s: masking.transfer("surrogate"),
        lambda s: masking.transfer(s["surrogate"], attack="pgd"),
        lambda s: masking.input_gradient_zero_fraction(s["base"], s["x"], s["y"][:-1]),
        lambda s: masking.sanity_checks(s["base"], s["x"], s["y"], eps=0.0),
        lambda s: masking.sanity_checks(s["base"], s["x"], s["y"], eps=1.5),
        lambda s: masking.sanity_checks(s["base"], s["x"], s["y"], eps=0.1, steps=0),
        lambda s: masking.sanity_checks(s["base"], s["x"], s["y"], eps=0.1, queries=0),
        lambda s: masking.sanity_checks(s["base"], s["x"], s["y"], eps=0.1, tol=-0.1),
        lambda s: masking.sanity_checks(s["base"], s["x"], s["y"], eps=0.1, surrogate="model"),
        lambda s: masking.sanity_checks(s["base"], s["x"] * 2, s["y"], eps=0.1),
    ],
)
def test_bad_arguments_raise_value_error(setting, call):
    with pytest.raises(ValueError):
        call(setting)


RESULTS = {
    "no defence": {"FGSM": 0.3, "PGD": 0.2, "BPDA": 0.2},
    "quantisation": {"FGSM": 0.95, "PGD": 0.9, "BPDA": 0.5},
}


def test_masking_explorer_precomputes_every_defence_and_attack():
    fig = factory.plot_attack_bars(RESULTS, "quantisation", "BPDA")
    assert "50%" in fig.axes[0].get_title()
    plt.close(fig)
    box = factory.masking_explorer(RESULTS, live=False)
    stack = next(c for c in box.children if isinstance(c, widgets.Stack))
    images = [bytes(img.value) for inner in stack.children for img in inner.children]
    assert len(images) == 6 and len(set(images)) == 6


@pytest.mark.parametrize(
    "call",
    [
        lambda f: f.masking_explorer({}, live=False),
        lambda f: f.masking_explorer({"a": {"x": 1.5}}, live=False),
        lambda f: f.masking_explorer({"a": {"x": 0.5}, "b": {"y": 0.5}}, live=False),
        lambda f: f.masking_explorer(RESULTS, defences=["jpeg"], live=False),
        lambda f: f.plot_attack_bars(RESULTS, "jpeg", "PGD"),
        lambda f: f.plot_attack_bars(RESULTS, "quantisation", "CW"),
    ],
)
def test_masking_widget_bad_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call(factory)
