"""Gradient masking (gdsec.masking): the defences mask, BPDA/EOT/transfer see through, the checks flag."""

import functools

import ipywidgets as widgets
import matplotlib.pyplot as plt
import pytest
import torch

from gdsec import attacks, data, masking, models, train
from gdsec.models import eval_mode
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
        "x_train": x_train,
        "y_train": y_train,
        "x": x_test,
        "y": y_test,
        "base": base,
        "quantized": quantized,
        "saturated": saturated,
        "robust": robust,
        "surrogate": surrogate,
    }


def _zero_share(model, x, y):
    """The share of rows with a zero input gradient (gdsec.attacks.zero_gradient_rows), in eval mode."""
    with eval_mode(model):
        return attacks.zero_gradient_rows(model, x, y).float().mean().item()


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


@pytest.mark.integration
def test_defences_mask_the_gradient_but_keep_predictions(setting):
    x, y = setting["x"], setting["y"]
    assert _zero_share(setting["base"], x, y) == 0.0
    assert _zero_share(setting["quantized"], x, y) == 1.0
    assert _zero_share(setting["saturated"], x, y) > 0.7
    assert torch.equal(setting["saturated"](x).argmax(1), setting["base"](x).argmax(1))
    assert setting["saturated"][0] is setting["base"]  # the classifier is shared, not copied


def test_whitebox_attacks_fail_and_bpda_transfer_succeed(setting):
    x, y = setting["x"], setting["y"]
    for name in ("quantized", "saturated"):
        model = setting[name]
        whitebox = attacks.robust_accuracy(model, x, y, "pgd", eps=EPS, steps=10, seed=0)
        bpda = attacks.robust_accuracy(
            model,
            x,
            y,
            lambda m, xs, ys: attacks.pgd(masking.bpda(m), xs, ys, EPS, steps=10, seed=0),
        )
        moved = attacks.robust_accuracy(
            model,
            x,
            y,
            masking.transfer(setting["surrogate"], attacks.pgd, eps=EPS, steps=10, seed=0),
        )
        assert whitebox > 0.8, name
        assert bpda < whitebox - 0.3 and moved < whitebox - 0.2, name


def test_bpda_keeps_the_forward_pass_and_restores_a_gradient(setting):
    x, y = setting["x"][:20], setting["y"][:20]
    stand_in = masking.bpda(setting["quantized"])
    assert torch.equal(stand_in(x), setting["quantized"](x))
    assert _zero_share(stand_in, x, y) == 0.0
    assert torch.equal(masking.bpda(setting["saturated"])(x), setting["base"](x))


def test_eot_averages_random_draws():
    class Noisy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.generator = torch.Generator().manual_seed(0)

        def forward(self, x):
            return x + torch.randn(x.shape, generator=self.generator)

    averaged = masking.eot(Noisy(), draws=400)(torch.zeros(3, 2))
    assert averaged.abs().max() < 0.25


def test_fit_generator_is_pca_and_encode_projects(setting):
    x = setting["x"]
    generator = masking.fit_generator(x, components=10)
    basis = generator.basis
    assert basis.shape == (64, 10) and torch.allclose(basis.T @ basis, torch.eye(10), atol=1e-5)
    flat = x.reshape(len(x), -1)
    z = generator.encode(x)
    residual = flat - (generator.mean + z @ basis.T)
    assert torch.allclose(residual @ basis, torch.zeros_like(z), atol=1e-4), (
        "the residual must be orthogonal to the range"
    )
    more = masking.fit_generator(x, components=30)
    assert (flat - more(more.encode(x)).reshape(len(x), -1)).norm() < (
        flat - generator(z).reshape(len(x), -1)
    ).norm()


def test_purifier_lands_near_the_projection_but_its_gradient_explodes(setting):
    x, y = setting["x"], setting["y"]
    generator = masking.fit_generator(setting["x_train"], components=20)
    purifier = masking.Purifier(generator)
    exact = generator(generator.encode(x))
    assert (purifier(x) - exact).abs().max() < 0.05
    assert (masking.Purifier(generator, steps=5)(x) - exact).abs().max() > 0.1, (
        "too few steps must not reach it"
    )
    on_range = exact.detach()
    error = (purifier(on_range) - on_range).abs()
    assert error.max() < 0.1 and error.mean() < 0.01, "g(h(z)) = h(z): the purifier fixes its range"

    def grad_norm(model):
        xs = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(xs), y), xs)
        return g.reshape(len(x), -1).norm(dim=1).median().item()

    defended = masking.defend(setting["base"], "purify", generator=generator)
    stand_in = masking.reparameterise(defended)
    assert grad_norm(defended) > 100 * grad_norm(stand_in)
    assert (
        torch.allclose(stand_in(x), setting["base"](exact), atol=1e-5)
        and stand_in[-1] is setting["base"]
    )


def test_reparameterisation_breaks_the_purifier(setting):
    x, y = setting["x"], setting["y"]
    generator = masking.fit_generator(setting["x_train"], components=20)
    defended = masking.defend(setting["base"], "purify", generator=generator)
    whitebox = attacks.robust_accuracy(defended, x, y, "pgd", eps=EPS, steps=10, seed=0)
    adaptive = attacks.robust_accuracy(
        defended,
        x,
        y,
        lambda m, xs, ys: attacks.pgd(masking.reparameterise(m), xs, ys, EPS, steps=10, seed=0),
    )
    assert adaptive < whitebox - 0.3, (whitebox, adaptive)


def test_traps_keep_predictions_and_mask_only_where_built_to(setting):
    x, base = setting["x"], setting["base"]
    off_grid, far = masking.OffGridSaturation(base), masking.FarSaturation(base, x, radius=0.2)
    moved = (x + 0.03).clamp(0, 1)
    for trap in (off_grid, far):
        assert torch.equal(trap(moved).argmax(1), base(moved).argmax(1))
        assert torch.allclose(trap(x), base(x))
    assert torch.allclose(off_grid(moved), base(moved) * 1e4, rtol=1e-4)
    assert torch.allclose(far(moved), base(moved)) and torch.allclose(
        far((x + 0.3).clamp(0, 1)), base((x + 0.3).clamp(0, 1)) * 1e4, rtol=1e-4
    )


def test_adversarial_training_draws_a_fresh_start_per_batch(setting):
    seen = []

    def adversary(model, xb, yb, *, seed):
        seen.append(seed)
        return attacks.pgd(model, xb, yb, EPS, steps=1, seed=seed)

    model = models.mlp(hidden=8, seed=0)
    train.train(
        model,
        setting["x_train"][:96],
        setting["y_train"][:96],
        lr=0.1,
        epochs=2,
        batch_size=32,
        progress=False,
        adversary=adversary,
    )
    assert len(seen) == 6 and len(set(seen)) == 6


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
        lambda s: masking.eot(s["base"], draws=0),
        lambda s: masking.transfer("surrogate"),
        lambda s: masking.transfer(s["surrogate"], attack="pgd"),
        lambda s: masking.fit_generator(s["x"], components=0),
        lambda s: masking.fit_generator(s["x"] * 2),
        lambda s: masking.Purifier("generator"),
        lambda s: masking.Purifier(masking.fit_generator(s["x"]), steps=0),
        lambda s: masking.Purifier(masking.fit_generator(s["x"]), decay=1.5),
        lambda s: masking.defend(s["base"], "purify"),
        lambda s: masking.reparameterise(masking.defend(s["base"], "quantize")),
        lambda s: masking.reparameterise(s["base"]),
        lambda s: masking.OffGridSaturation(s["base"], levels=1),
        lambda s: masking.FarSaturation(s["base"], s["x"], radius=0.0),
        lambda s: masking.FarSaturation(s["base"], s["x"] * 2),
    ],
)
def test_bad_arguments_raise_value_error(setting, call):
    with pytest.raises(ValueError):
        call(setting)


@pytest.mark.integration
def test_masking_explorer_precomputes_temperature_by_attack_with_per_row_outcomes(setting):
    x, y, base = setting["x"][:30], setting["y"][:30], setting["base"]
    cold, zero_cold = factory.attack_outcomes(
        base, x, y, temperature=1.0, attack=factory.ATTACK_LABELS[0], eps=EPS
    )
    hot, zero_hot = factory.attack_outcomes(
        base, x, y, temperature=1000.0, attack=factory.ATTACK_LABELS[0], eps=EPS
    )
    dlr, _ = factory.attack_outcomes(
        base, x, y, temperature=1000.0, attack=factory.ATTACK_LABELS[1], eps=EPS
    )
    assert set(cold.tolist()) <= {0, 1, 2} and torch.equal(cold == 0, hot == 0)
    assert (hot == 2).sum() > (cold == 2).sum() + 10 and zero_hot > 0.5 == zero_cold + 0.5
    assert (dlr == 2).sum() <= (cold == 2).sum() + 2, (
        "the DLR loss does not care about the temperature"
    )
    fig = factory.plot_outcomes(
        hot, y, temperature=1000.0, attack=factory.ATTACK_LABELS[0], zero_fraction=zero_hot
    )
    assert f"{int((hot == 2).sum())} of 30 digits survive" in fig.axes[0].get_title()
    plt.close(fig)
    box = factory.masking_explorer(base, x, y, eps=EPS, temperatures=(1.0, 1000.0), live=False)
    stack = next(c for c in box.children if isinstance(c, widgets.Stack))
    images = [bytes(img.value) for inner in stack.children for img in inner.children]
    assert len(images) == 2 * len(factory.ATTACK_LABELS) and len(set(images)) == len(images)


@pytest.mark.parametrize(
    "call",
    [
        lambda f, s: f.masking_explorer("model", s["x"], s["y"], eps=EPS, live=False),
        lambda f, s: f.masking_explorer(s["base"], s["x"], s["y"][:-1], eps=EPS, live=False),
        lambda f, s: f.masking_explorer(s["base"], s["x"], s["y"], eps=0.0, live=False),
        lambda f, s: f.masking_explorer(
            s["base"], s["x"], s["y"], eps=EPS, temperatures=(), live=False
        ),
        lambda f, s: f.masking_explorer(
            s["base"], s["x"], s["y"], eps=EPS, temperatures=(0.0,), live=False
        ),
        lambda f, s: f.attack_outcomes(
            s["base"], s["x"], s["y"], temperature=1.0, attack="CW", eps=EPS
        ),
        lambda f, s: f.attack_outcomes(
            s["base"], s["x"], s["y"], temperature=-1.0, attack=f.ATTACK_LABELS[0], eps=EPS
        ),
    ],
)
def test_masking_widget_bad_arguments_raise_value_error(setting, call):
    with pytest.raises(ValueError):
        call(factory, setting)
