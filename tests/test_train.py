"""Training loops, evaluation and gradient measurements."""

import pytest
import torch

from gdsec import data, models, train


@pytest.fixture(scope="module")
def split():
    return data.load_digits()


@pytest.mark.parametrize(
    "optimizer, lr", [("sgd", 0.1), ("momentum", 0.05), ("rmsprop", 0.01), ("adam", 0.01)]
)
def test_every_optimizer_trains_logistic_regression(split, optimizer, lr):
    model = models.logistic_regression(seed=0)
    history = train.train(
        model, split.x_train, split.y_train, optimizer=optimizer, lr=lr, epochs=5, batch_size=64
    )
    assert history.loss[-1] < history.loss[0]
    assert len(history.loss) == len(history.seconds) == 5
    assert len(history.step_loss) == 5 * ((len(split.x_train) + 63) // 64)
    assert train.accuracy(model, split.x_test, split.y_test) > 0.8
    assert not model.training


def test_full_batch_is_one_step_per_epoch_and_deterministic(split):
    a, b = models.logistic_regression(seed=0), models.logistic_regression(seed=0)
    ha = train.train(a, split.x_train, split.y_train, lr=0.5, epochs=3)
    hb = train.train(b, split.x_train, split.y_train, lr=0.5, epochs=3)
    assert len(ha.step_loss) == 3 and ha.loss == hb.loss
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_minibatch_order_depends_on_seed(split):
    a, b = models.logistic_regression(seed=0), models.logistic_regression(seed=0)
    train.train(a, split.x_train, split.y_train, lr=0.1, epochs=1, batch_size=32, seed=0)
    train.train(b, split.x_train, split.y_train, lr=0.1, epochs=1, batch_size=32, seed=1)
    assert not torch.equal(a[1].weight, b[1].weight)


def test_adversary_hook_sees_every_batch_and_eval_data_is_recorded(split):
    seen = []

    def adversary(model, xb, yb, *, seed):
        seen.append(len(xb))
        return xb.clamp(0, 1)

    model = models.logistic_regression(seed=0)
    history = train.train(
        model,
        split.x_train,
        split.y_train,
        lr=0.1,
        epochs=2,
        batch_size=500,
        adversary=adversary,
        eval_data=(split.x_test, split.y_test),
    )
    assert sum(seen) == 2 * len(split.x_train)
    assert len(history.test_accuracy) == 2


def test_adversary_gets_a_fresh_reproducible_seed_per_batch(split):
    def run(seed):
        seen = []

        def adversary(model, xb, yb, *, seed):
            seen.append(seed)
            return xb

        train.train(
            models.logistic_regression(seed=0),
            split.x_train,
            split.y_train,
            lr=0.1,
            epochs=2,
            batch_size=500,
            seed=seed,
            adversary=adversary,
            progress=False,
        )
        return seen

    first, again, other = run(3), run(3), run(4)
    assert len(first) == 2 * 3 and len(set(first)) == len(first)
    assert first == again == [3_000_000 + step for step in range(6)]
    assert not set(first) & set(other)


def test_train_raises_on_divergence_instead_of_nan(split):
    with pytest.raises(FloatingPointError, match="too large"):
        train.train(
            models.mlp(seed=0), split.x_train, split.y_train, lr=1e12, epochs=3, progress=False
        )


def test_unguarded_run_can_carry_on_through_nan(split):
    x = split.x_train[:256].clone()
    x[5, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        train.train(models.mlp(seed=0), x, split.y_train[:256], lr=0.1, epochs=1, batch_size=32)
    model = models.mlp(seed=0)
    history = train.train(
        model,
        x,
        split.y_train[:256],
        lr=0.1,
        epochs=2,
        batch_size=32,
        on_nonfinite="continue",
        progress=False,
    )
    assert history.steps == 16 and any(v != v for v in history.step_loss)
    assert not all(torch.isfinite(p).all() for p in model.parameters())


def test_guards_are_counted_in_history_and_reported_to_the_callback(split):
    x, y = split.x_train[:256].clone(), split.y_train[:256]
    x[:8] *= 1e3  # one extreme batch of 8 rows at every position of the shuffled order
    records = []
    history = train.train(
        models.mlp(seed=0),
        x,
        y,
        lr=0.1,
        epochs=2,
        batch_size=32,
        guards=train.Guards(max_norm=5.0),
        callback=records.append,
        progress=False,
    )
    assert [r.step for r in records] == list(range(16)) and {r.epoch for r in records} == {0, 1}
    assert history.clipped_steps == sum(r.clipped for r in records) > 0
    assert all(r.grad_norm > 5.0 for r in records if r.clipped)
    assert history.largest_grad_norm == max(r.grad_norm for r in records)
    assert [r.loss for r in records] == history.step_loss
    validated = train.train(
        models.mlp(seed=0),
        x,
        y,
        lr=0.1,
        epochs=2,
        batch_size=32,
        guards=train.Guards(validate_inputs=True),
        progress=False,
    )
    assert validated.rejected_rows == 2 * 8 and validated.clipped_steps == 0


def test_guarded_run_matches_plain_run_when_no_guard_fires(split):
    x, y = split.x_train[:256], split.y_train[:256]
    a, b = models.mlp(seed=0), models.mlp(seed=0)
    plain = train.train(a, x, y, lr=0.1, epochs=2, batch_size=32, progress=False)
    guarded = train.train(
        b,
        x,
        y,
        lr=0.1,
        epochs=2,
        batch_size=32,
        progress=False,
        on_nonfinite="skip",
        guards=train.Guards(max_norm=1e6, spike_factor=1e6, validate_inputs=True),
    )
    assert plain.step_loss == guarded.step_loss
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not b.training and all(p.grad is None for p in b.parameters())


def test_unknown_hyperparameter_is_an_error_not_plain_sgd(split):
    with pytest.raises(ValueError, match="momentum"):
        train.train(
            models.logistic_regression(),
            split.x_train,
            split.y_train,
            lr=0.1,
            epochs=1,
            momentum=0.9,
        )
    with pytest.raises(ValueError, match="beta2"):
        train.train(
            models.logistic_regression(),
            split.x_train,
            split.y_train,
            optimizer="momentum",
            lr=0.1,
            epochs=1,
            beta2=0.9,
        )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr": 0}, "lr"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 10**6}, "batch_size"),
        ({"optimizer": "newton"}, "optimizer"),
        ({"seed": -1}, "seed"),
        ({"guards": {"max_norm": 1.0}}, "guards"),
        ({"on_nonfinite": "ignore"}, "on_nonfinite"),
    ],
)
def test_train_rejects_bad_arguments(split, kwargs, message):
    args = {"lr": 0.1, "epochs": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        train.train(models.logistic_regression(), split.x_train, split.y_train, **args)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_norm": 0.0}, "max_norm"),
        ({"spike_factor": 1.0}, "spike_factor"),
        ({"validate_inputs": 1}, "validate_inputs"),
    ],
)
def test_guards_reject_bad_fields(kwargs, message):
    with pytest.raises(ValueError, match=message):
        train.Guards(**kwargs)


def test_on_nonfinite_skip_skips_and_counts_the_nan_steps(split):
    x = split.x_train[:256].clone()
    x[5, 0, 3, 3] = float("nan")
    records = []
    model = models.mlp(seed=0)
    history = train.train(
        model,
        x,
        split.y_train[:256],
        lr=0.1,
        epochs=2,
        batch_size=32,
        on_nonfinite="skip",
        callback=records.append,
        progress=False,
    )
    assert history.nonfinite_skips == 2 == sum(r.skipped == "nonfinite" for r in records)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_train_rejects_bad_data(split):
    model = models.logistic_regression()
    with pytest.raises(ValueError, match="y"):
        train.train(model, split.x_train, split.y_train[:-1], lr=0.1, epochs=1)
    bad = split.x_train.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        train.train(model, bad, split.y_train, lr=0.1, epochs=1)


def test_accuracy_and_predict_restore_mode(split):
    model = models.mlp(seed=0)
    model.train()
    acc = train.accuracy(model, split.x_test, split.y_test)
    assert 0.0 <= acc <= 1.0 and model.training


def test_loss_gradient_leaves_grads_and_matches_backward(split):
    model = models.logistic_regression(seed=0)
    flat = train.loss_gradient(model, split.x_test, split.y_test)
    assert all(p.grad is None for p in model.parameters())
    torch.nn.functional.cross_entropy(model(split.x_test), split.y_test).backward()
    reference = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    assert torch.allclose(flat, reference, atol=1e-6)


def test_gradient_noise_falls_with_batch_size(split):
    model = models.logistic_regression(seed=0)
    small = train.gradient_noise(model, split.x_train, split.y_train, batch_size=2, draws=32)
    large = train.gradient_noise(model, split.x_train, split.y_train, batch_size=200, draws=32)
    full = train.gradient_noise(
        model, split.x_train, split.y_train, batch_size=len(split.x_train), draws=2
    )
    assert small > 20 * large and full < 1e-10
    with pytest.raises(ValueError, match="draws"):
        train.gradient_noise(model, split.x_train, split.y_train, batch_size=2, draws=0)


def test_gradient_noise_is_sampling_without_replacement(split):
    """E|g_B - g|^2 = sigma^2 / b * (N - b) / (N - 1) (chapter 2's finite-population factor)."""
    model = models.logistic_regression(seed=0)
    x, y, b = split.x_train[:16], split.y_train[:16], 12
    full = train.loss_gradient(model, x, y)
    rows = torch.stack([train.loss_gradient(model, x[i : i + 1], y[i : i + 1]) for i in range(16)])
    sigma2 = (rows - full).pow(2).sum(1).mean().item()
    expected = sigma2 / b * (16 - b) / (16 - 1)  # with replacement: sigma2 / b, 3.75 times more
    measured = train.gradient_noise(model, x, y, batch_size=b, draws=100, seed=0)
    assert abs(measured / expected - 1) < 0.2, (
        f"mini-batch gradient variance {measured:.4g}, sampling without replacement predicts "
        f"{expected:.4g} (with replacement {sigma2 / b:.4g})"
    )
