"""gdsec.seeds: stacked training matches train.train seed by seed; summaries and intervals are right."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gdsec import models, seeds, train
from gdsec.seeds import Summary, format_mean_spread, summarise, train_seeds, wilson_interval

TOL = 1e-4


@pytest.fixture(scope="module")
def small(digits):
    """The first 200 training digits (a few epochs of them are quick)."""
    return digits.x_train[:200].clone(), digits.y_train[:200].clone()


def _mlp(seed: int) -> nn.Module:
    return models.mlp(64, 10, hidden=16, seed=seed)


def _gap(a: nn.Module, b: nn.Module) -> float:
    """Largest absolute difference between two models' parameters."""
    return max(
        (p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )


def _reference(model_fn, x, y, seed, **kwargs) -> nn.Module:
    model = model_fn(seed=seed)
    train.train(model, x, y, seed=seed, progress=False, **kwargs)
    return model


@pytest.mark.parametrize(
    "optimizer, lr", [("sgd", 0.5), ("momentum", 0.1), ("adam", 1e-2), ("rmsprop", 1e-3)]
)
@pytest.mark.integration
@pytest.mark.parametrize("batch_size", [32, None], ids=["minibatch", "fullbatch"])
def test_each_seed_matches_train_train(small, optimizer, lr, batch_size):
    x, y = small
    kwargs = dict(optimizer=optimizer, lr=lr, epochs=4, batch_size=batch_size)
    trained = train_seeds(_mlp, x, y, seeds=[0, 3, 7], **kwargs)
    for seed, model in zip([0, 3, 7], trained, strict=True):
        reference = _reference(_mlp, x, y, seed, **kwargs)
        assert _gap(model, reference) < TOL
        assert _gap(model, _mlp(seed)) > 100 * TOL  # it did train


def _row_linear(seed: int) -> nn.Module:
    """A linear layer applied to each image row (inputs (B, 1, 8, 8)), then a linear head."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(8, 6), nn.Tanh(), nn.Flatten(), nn.Linear(48, 10))


@pytest.mark.parametrize(
    "model_fn",
    [
        lambda seed: models.logistic_regression(seed=seed),
        lambda seed: models.digits_cnn(channels=4, seed=seed),
        lambda seed: models.mlp(64, 10, hidden=12, depth=2, activation="tanh", seed=seed),
        _row_linear,
    ],
    ids=["logistic_regression", "digits_cnn", "tanh_mlp", "row_linear"],
)
@pytest.mark.integration
def test_other_models_match_train_train(small, model_fn):
    x, y = small[0][:96], small[1][:96]
    kwargs = dict(optimizer="adam", lr=1e-2, epochs=3, batch_size=16, weight_decay=1e-3)
    for seed, model in zip(
        [1, 2], train_seeds(model_fn, x, y, seeds=[1, 2], **kwargs), strict=True
    ):
        assert _gap(model, _reference(model_fn, x, y, seed, **kwargs)) < TOL


def test_unsupported_layers_fall_back_to_vmap_and_still_match(small):
    def with_layer_norm(seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return nn.Sequential(
                nn.Flatten(), nn.Linear(64, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 10)
            )

    x, y = small
    kwargs = dict(optimizer="momentum", lr=0.05, epochs=2, batch_size=25)
    for seed, model in zip(
        [4, 5], train_seeds(with_layer_norm, x, y, seeds=[4, 5], **kwargs), strict=True
    ):
        assert _gap(model, _reference(with_layer_norm, x, y, seed, **kwargs)) < TOL


def test_batch_order_is_each_seeds_own(small):
    """Seed s draws train.train's order for s: another order is far off, and the other seeds do not matter."""
    x, y = small
    kwargs = dict(optimizer="sgd", lr=0.5, epochs=3, batch_size=20)
    alone = train_seeds(_mlp, x, y, seeds=[2], **kwargs)[0]
    together = train_seeds(_mlp, x, y, seeds=[9, 2, 5], **kwargs)[1]
    assert _gap(alone, together) < TOL
    # the same initial weights trained on seed 9's batch order end far away: a wrong order cannot pass
    wrong_order = _mlp(2)
    train.train(wrong_order, x, y, seed=9, progress=False, **kwargs)
    assert _gap(together, wrong_order) > 1e-2
    assert _gap(together, _reference(_mlp, x, y, 2, **kwargs)) < TOL


def test_data_may_differ_per_seed(small):
    x, y = small
    flipped = []
    for seed in (0, 1):
        g = torch.Generator().manual_seed(100 + seed)
        labels = y.clone()
        rows = torch.randperm(len(y), generator=g)[:60]
        labels[rows] = torch.randint(0, 10, (60,), generator=g)
        flipped.append(labels)
    shifted = [x, (x + 0.1).clamp(0, 1)]
    kwargs = dict(optimizer="adam", lr=1e-2, epochs=2, batch_size=40)
    for xs, ys in ((x, flipped), (shifted, y), (shifted, flipped)):
        trained = train_seeds(_mlp, xs, ys, seeds=[0, 1], **kwargs)
        for i, model in enumerate(trained):
            xi = xs[i] if isinstance(xs, list) else xs
            yi = ys[i] if isinstance(ys, list) else ys
            assert _gap(model, _reference(_mlp, xi, yi, i, **kwargs)) < TOL
    # each seed really used its own labels
    shared = train_seeds(_mlp, x, y, seeds=[0, 1], **kwargs)
    assert _gap(shared[1], train_seeds(_mlp, x, flipped, seeds=[0, 1], **kwargs)[1]) > 1e-2


def test_returns_independent_eval_models_and_leaves_inputs_alone(small):
    x, y = small
    x_before, y_before = x.clone(), y.clone()
    trained = train_seeds(
        _mlp, x, y, seeds=[0, 1], optimizer="sgd", lr=0.1, epochs=1, batch_size=50
    )
    assert torch.equal(x, x_before) and torch.equal(y, y_before)
    assert all(isinstance(m, nn.Sequential) and not m.training for m in trained)
    assert all(
        p.grad is None and p.is_leaf and p.requires_grad for m in trained for p in m.parameters()
    )
    before = trained[1][1].weight.detach().clone()
    with torch.no_grad():
        trained[0][1].weight.add_(1.0)
    assert torch.equal(trained[1][1].weight, before)


def test_non_finite_loss_raises(small):
    x, y = small
    huge = x * 3e38  # finite inputs whose logits overflow: only seed 5's loss is not finite
    with pytest.raises(FloatingPointError, match=r"seeds \[5\]"):
        train_seeds(
            _mlp, [x, huge], y, seeds=[4, 5], optimizer="sgd", lr=0.1, epochs=1, batch_size=20
        )


def _call(small, **overrides):
    x, y = small
    kwargs = dict(seeds=[0, 1], optimizer="sgd", lr=0.1, epochs=1, batch_size=50)
    kwargs.update(overrides)
    return train_seeds(
        kwargs.pop("model_fn", _mlp), kwargs.pop("x", x), kwargs.pop("y", y), **kwargs
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(seeds=[]), "seeds must hold at least one"),
        (dict(seeds=[1, 2, 1]), r"seeds must be distinct.*\[1\]"),
        (dict(seeds=[0, 1.0]), "seeds must hold integers"),
        (dict(seeds=[0, True]), "seeds must hold integers"),
        (dict(seeds=[-1]), "seeds must hold integers >= 0"),
        (dict(seeds=3), "seeds must be a list"),
        (dict(seeds="01"), "seeds must be a list"),
        (dict(optimizer="lbfgs"), "optimizer must be one of"),
        (dict(momentum=0.9), "momentum"),
        (dict(optimizer="adam", beta=0.9), "beta"),
        (dict(lr=0.0), "lr must be"),
        (dict(epochs=0), "epochs must be"),
        (dict(batch_size=201), "batch_size must be"),
        (dict(model_fn=3), "model_fn must be callable"),
        (
            dict(model_fn=lambda seed: models.mlp(64, 10, hidden=8 + seed, seed=seed)),
            "model_fn must be models of one architecture",
        ),
        (
            dict(
                model_fn=lambda seed: nn.Sequential(
                    nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, 10)
                )
            ),
            "dropout",
        ),
        (dict(model_fn=lambda seed: "model"), "model_fn must return a torch.nn.Module"),
    ],
)
def test_bad_settings_raise_naming_the_argument(small, overrides, message):
    with pytest.raises(ValueError, match=message):
        _call(small, **overrides)


def test_mismatched_data_raises_naming_the_argument(small):
    x, y = small
    cases = [
        (dict(x=[x, x, x]), "x must hold one tensor per seed"),
        (dict(y=[y]), "y must hold one tensor per seed"),
        (dict(x=[x, x[:100]]), "x must have the same shape"),
        (dict(x=[x, x], y=[y, y[:100]]), r"y\[1\] must have 200 labels"),
        (dict(y=y[:100]), "y must have 200 labels"),
        (dict(x=x.long()), "x must be a floating-point tensor"),
        (dict(x=[x, x.clone().fill_(float("nan"))]), r"x\[1\] must not contain NaN"),
        (dict(y=y.float()), "y must hold integer labels"),
        (dict(x=(x for _ in range(2))), "x must be a tensor or a list"),
    ]
    for overrides, message in cases:
        with pytest.raises(ValueError, match=message):
            _call(small, **overrides)


def test_check_seeds_accepts_ranges_and_lists():
    assert seeds.check_seeds(range(3)) == [0, 1, 2]
    assert seeds.check_seeds((5, 2)) == [5, 2]


def test_summarise_is_mean_sample_std_and_range():
    summary = summarise([0.90, 0.94, 0.92, 0.96])
    assert summary == pytest.approx(Summary(0.93, math.sqrt(0.002 / 3), 0.90, 0.96, 4))
    assert summarise(torch.tensor([1.0, 3.0])) == pytest.approx(
        Summary(2.0, math.sqrt(2.0), 1.0, 3.0, 2)
    )
    assert summarise(range(5)).std == pytest.approx(math.sqrt(2.5))


@pytest.mark.parametrize(
    "values, message",
    [
        ([], "at least 2"),
        ([0.5], "at least 2"),
        ([0.5, float("nan")], r"values\[1\]"),
        ([0.5, True], r"values\[1\]"),
        (["0.5", "0.7"], r"values\[0\]"),
        (0.5, "sequence of numbers"),
        ("0.5", "sequence of numbers"),
        (torch.ones(2, 2), "1-D"),
    ],
)
def test_summarise_rejects_bad_values(values, message):
    with pytest.raises(ValueError, match=message):
        summarise(values)


def test_wilson_interval_matches_scipy_and_known_values():
    stats = pytest.importorskip("scipy.stats")
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27754), abs=1e-5)
    for successes, n in [(0, 10), (11, 89), (85, 89), (89, 89), (1, 1), (430, 450)]:
        ci = stats.binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
        lo, hi = wilson_interval(successes, n, z=stats.norm.ppf(0.975))
        assert (lo, hi) == pytest.approx((ci.low, ci.high), abs=1e-9)
        assert 0.0 <= lo <= successes / n <= hi <= 1.0
    lo, hi = wilson_interval(11, 89)
    assert (lo, hi) == pytest.approx(tuple(1 - v for v in reversed(wilson_interval(78, 89))))
    assert wilson_interval(11, 89, z=2.58)[1] - wilson_interval(11, 89, z=2.58)[0] > hi - lo


@pytest.mark.parametrize(
    "args, message",
    [
        ((5, 0), "n must be"),
        ((-1, 10), "successes must be"),
        ((11, 10), "successes must be"),
        ((1.5, 10), "successes must be"),
        ((1, 10, 0.0), "z must be"),
        ((1, 10, float("inf")), "z must be"),
    ],
)
def test_wilson_interval_rejects_bad_counts(args, message):
    with pytest.raises(ValueError, match=message):
        wilson_interval(*args)


def test_format_mean_spread():
    assert format_mean_spread(Summary(0.9623, 0.0041, 0.95, 0.97, 5)) == "96.2% ± 0.4% (5 seeds)"
    assert format_mean_spread(summarise([1.0, 2.0, 3.0]), ".2f") == "2.00 ± 1.00 (3 seeds)"
    with pytest.raises(ValueError, match="summary must be a Summary"):
        format_mean_spread((0.9, 0.1, 0.8, 1.0, 3))
    with pytest.raises(ValueError, match="fmt must be"):
        format_mean_spread(Summary(0.9, 0.1, 0.8, 1.0, 3), "d")
    with pytest.raises(ValueError, match="fmt must be"):
        format_mean_spread(Summary(0.9, 0.1, 0.8, 1.0, 3), 1)
