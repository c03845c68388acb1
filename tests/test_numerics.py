"""Numerical exploitation and guards (gdsec.numerics): each attack does damage, each guard stops its own."""

import pytest
import torch

from gdsec import data, models, numerics, train


@pytest.fixture(scope="module")
def digits():
    split = data.load_digits()
    return split.x_train[:400], split.y_train[:400], split.x_test, split.y_test


def _trained(x, y, on_nonfinite="continue", **guards):
    """The digits MLP trained by the one training loop with ``guards``, carrying on through NaN."""
    model = models.mlp(seed=0)
    log = train.train(
        model,
        x,
        y,
        lr=0.1,
        epochs=8,
        batch_size=32,
        seed=0,
        progress=False,
        on_nonfinite=on_nonfinite,
        guards=train.Guards(**guards),
    )
    return model, log


def test_layer_gradient_norms_explode_with_input_scale_and_leave_model_alone(digits):
    x, y, _, _ = digits
    model = models.mlp(depth=2, seed=0)
    model.train()
    small = numerics.layer_gradient_norms(model, x[:64], y[:64])
    large = numerics.layer_gradient_norms(model, 1000 * x[:64], y[:64])
    assert len(small) == 3 and large[0] > 100 * small[0]
    assert model.training and all(p.grad is None for p in model.parameters())


def test_row_gradient_norms_match_one_row_at_a_time_and_leave_model_alone(digits):
    x, y, _, _ = digits
    model = models.mlp(depth=2, seed=0)
    model.train()
    for layer in (0, 2):
        rows = numerics.row_gradient_norms(model, x[:6], y[:6], layer=layer)
        alone = torch.tensor(
            [
                numerics.layer_gradient_norms(model, x[i : i + 1], y[i : i + 1])[layer]
                for i in range(6)
            ]
        )
        assert rows.shape == (6,) and torch.allclose(rows, alone, rtol=1e-4)
    assert model.training and all(p.grad is None for p in model.parameters())


def test_scaled_inputs_vanish_on_rows_a_trained_relu_net_gets_right(digits):
    x, y, _, _ = digits
    model, _ = _trained(x, y)
    with torch.no_grad():
        right = model(1000 * x).argmax(1) == y
    growth = numerics.row_gradient_norms(model, 1000 * x, y) / numerics.row_gradient_norms(
        model, x, y
    )
    assert 0.8 < right.float().mean() < 1.0
    assert (growth[right] < 1e-3).float().mean() > 0.95 and growth[~right].min() > 100


def test_sigmoid_stack_vanishes_and_saturates(digits):
    x, y, _, _ = digits
    model = models.mlp(depth=4, activation="sigmoid", seed=0)
    norms = numerics.layer_gradient_norms(model, x[:64], y[:64])
    assert norms[-1] > 100 * norms[0]
    assert numerics.unit_activity(model, 1000 * x[:64]).saturated_fraction > 0.1
    assert numerics.unit_activity(model, x[:64]).saturated_fraction < 0.01


def test_unit_activity_counts_dead_relus():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.copy_(torch.tensor([-1.0, 1.0, -2.0]))
    activity = numerics.unit_activity(model, torch.rand(5, 2))
    assert activity.dead_fraction == pytest.approx(2 / 3) and activity.saturated_fraction == 0.0


@pytest.mark.parametrize("kind", ["nan", "inf", "scale"])
def test_corrupt_rows_changes_exactly_the_chosen_rows(digits, kind):
    x, _, _, _ = digits
    corrupted, index = numerics.corrupt_rows(x, fraction=0.05, kind=kind, seed=3)
    assert len(index) == round(0.05 * len(x))
    assert not numerics.valid_rows(corrupted)[index].any()
    others = torch.ones(len(x), dtype=torch.bool)
    others[index] = False
    assert (
        torch.equal(corrupted[others], x[others]) and numerics.valid_rows(corrupted)[others].all()
    )
    assert torch.isfinite(x).all()  # input untouched
    again, index_again = numerics.corrupt_rows(x, fraction=0.05, kind=kind, seed=3)
    assert torch.equal(index, index_again) and torch.equal(
        torch.nan_to_num(again), torch.nan_to_num(corrupted)
    )


def test_valid_rows_accepts_non_finite_input_and_flags_it():
    x = torch.rand(4, 1, 2, 2)
    x[1, 0, 0, 0], x[2, 0, 1, 1], x[3, 0, 0, 1] = float("nan"), float("inf"), 1.5
    assert numerics.valid_rows(x).tolist() == [True, False, False, False]
    assert numerics.valid_rows(x, high=2.0).tolist() == [True, False, False, True]


def test_is_loss_spike():
    assert not numerics.is_loss_spike([1.0] * 3, 100.0)  # still warming up
    assert numerics.is_loss_spike([1.0] * 10, 11.0, factor=10.0)
    assert not numerics.is_loss_spike([1.0] * 10, 9.0, factor=10.0)
    assert not numerics.is_loss_spike([1.0] * 10, float("nan"))


@pytest.mark.integration
def test_guards_each_stop_their_own_attack(digits):
    x, y, x_test, y_test = digits
    clean_model, clean_log = _trained(x, y)
    clean_acc = train.accuracy(clean_model, x_test, y_test)
    assert clean_acc > 0.8 and clean_log.steps == 8 * 13
    assert (
        clean_log.rejected_rows
        == clean_log.clipped_steps
        == clean_log.spike_skips
        == clean_log.nonfinite_skips
        == 0
    )

    x_nan, _ = numerics.corrupt_rows(x, fraction=0.02, kind="nan", seed=0)
    x_big, _ = numerics.corrupt_rows(
        x, fraction=0.01, kind="scale", scale=1e3, seed=0
    )  # 4 rows: at 2 % clipping saves 2 seeds in 5

    unguarded, _ = _trained(x_nan, y)
    assert not numerics.parameters_finite(unguarded)
    for guards in ({"validate_inputs": True}, {"on_nonfinite": "skip"}):
        model, log = _trained(x_nan, y, **guards)
        assert numerics.parameters_finite(model) and train.accuracy(model, x_test, y_test) > 0.5
        assert log.rejected_rows + log.nonfinite_skips > 0
    clipped_nan, _ = _trained(x_nan, y, max_norm=5.0)
    assert not numerics.parameters_finite(clipped_nan)

    wrecked, _ = _trained(x_big, y)
    wrecked_acc = train.accuracy(wrecked, x_test, y_test)
    assert wrecked_acc < 0.5
    validated, _ = _trained(x_big, y, validate_inputs=True)
    assert train.accuracy(validated, x_test, y_test) > clean_acc - 0.05
    clipped, clip_log = _trained(x_big, y, max_norm=5.0)
    assert (
        train.accuracy(clipped, x_test, y_test) > wrecked_acc + 0.4 and clip_log.clipped_steps > 0
    )
    _, spike_log = _trained(x_big, y, spike_factor=10.0)
    assert spike_log.spike_skips > 0
    passthrough, _ = _trained(x_big, y, on_nonfinite="skip")
    assert train.accuracy(passthrough, x_test, y_test) < 0.5


@pytest.mark.parametrize(
    "call",
    [
        lambda m, x, y: numerics.layer_gradient_norms("model", x, y),
        lambda m, x, y: numerics.layer_gradient_norms(m, x[:4], y[:5]),
        lambda m, x, y: numerics.layer_gradient_norms(torch.nn.ReLU(), x[:4], y[:4]),
        lambda m, x, y: numerics.unit_activity(m, x, saturation=1.0),
        lambda m, x, y: numerics.unit_activity(m, torch.zeros(0, 64)),
        lambda m, x, y: numerics.corrupt_rows(x, fraction=1.5),
        lambda m, x, y: numerics.corrupt_rows(x, fraction=0.1, kind="zero"),
        lambda m, x, y: numerics.corrupt_rows(x, fraction=0.1, kind="scale", scale=0.0),
        lambda m, x, y: numerics.corrupt_rows(x[0, 0, 0], fraction=0.1),
        lambda m, x, y: numerics.valid_rows(x, low=1.0, high=0.0),
        lambda m, x, y: numerics.is_loss_spike([1.0], 1.0, factor=1.0),
        lambda m, x, y: numerics.is_loss_spike([1.0], 1.0, warmup=0),
        lambda m, x, y: numerics.parameters_finite(None),
        lambda m, x, y: numerics.valid_rows(torch.zeros(3)),
        lambda m, x, y: numerics.valid_rows(torch.zeros(3, 2, dtype=torch.long)),
        lambda m, x, y: numerics.row_gradient_norms(m, x, y, layer=2),
        lambda m, x, y: numerics.row_gradient_norms(m, x[:4], y[:5]),
        lambda m, x, y: numerics.row_gradient_norms(torch.nn.ReLU(), x[:4], y[:4]),
    ],
)
def test_bad_arguments_raise_value_error(digits, call):
    x, y, _, _ = digits
    with pytest.raises(ValueError):
        call(models.mlp(hidden=8, seed=0), x[:32], y[:32])
