"""Gradient-free attacks (gdsec.blackbox): the attack contract of DESIGN §4, and that they work."""

import pytest
import torch

from gdsec import attacks, blackbox, data, models, train

ATTACKS = {
    "square": lambda m, x, y, eps, seed=0: blackbox.square_attack(m, x, y, eps, queries=200, seed=seed),
    "spsa": lambda m, x, y, eps, seed=0: blackbox.spsa(m, x, y, eps, steps=15, samples=16, seed=seed),
}


@pytest.fixture(scope="module")
def trained():
    split = data.load_digits()
    model = models.mlp(seed=0)
    train.train(model, split.x_train, split.y_train, lr=0.1, epochs=10, batch_size=32, progress=False)
    return model, split.x_test[:120], split.y_test[:120]


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_contract_shape_budget_and_untouched_state(trained, name):
    model, x, y = trained
    x_before = x.clone()
    model.train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    x_adv = ATTACKS[name](model, x, y, 0.1)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert torch.equal(x, x_before) and x_adv.data_ptr() != x.data_ptr()
    assert model.training
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters())
    model.eval()
    for p in model.parameters():
        p.grad = None


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attacks_lower_accuracy_and_are_deterministic(trained, name):
    model, x, y = trained
    clean = train.accuracy(model, x, y)
    robust = attacks.robust_accuracy(model, x, y, lambda m, xs, ys: ATTACKS[name](m, xs, ys, 0.2))
    assert robust < clean - 0.4
    assert torch.equal(ATTACKS[name](model, x, y, 0.1, seed=4), ATTACKS[name](model, x, y, 0.1, seed=4))


def test_square_is_at_least_as_strong_as_fgsm_at_a_larger_budget(trained):
    model, x, y = trained
    square = attacks.robust_accuracy(model, x, y, "square", eps=0.2, queries=500)
    fgsm = attacks.robust_accuracy(model, x, y, "fgsm", eps=0.2)
    assert square <= fgsm + 0.05


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_batch_of_one_tabular_inputs_and_zero_budget(name):
    split = data.make_blobs_2d(n=120, n_classes=3, seed=0)
    model = models.mlp(2, 3, hidden=16, seed=0)
    train.train(model, split.x_train, split.y_train, lr=0.5, epochs=30, batch_size=16, progress=False)
    x_adv = ATTACKS[name](model, split.x_test, split.y_test, 0.3)
    assert x_adv.shape == split.x_test.shape and (x_adv - split.x_test).abs().max() <= 0.3 + 1e-6
    one = ATTACKS[name](model, split.x_test[:1], split.y_test[:1], 0.3)
    assert one.shape == (1, 2)
    assert torch.equal(ATTACKS[name](model, split.x_test, split.y_test, 0.0), split.x_test)


def test_square_respects_its_query_budget(trained):
    model, x, y = trained
    rows_seen = []

    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, inputs):
            rows_seen.append(len(inputs))
            return self.inner(inputs)

    counting = Counting()
    blackbox.square_attack(counting, x, y, 0.1, queries=50)
    assert sum(rows_seen) - 1 <= 50 * len(x)  # minus the one-row shape probe


def test_robust_accuracy_finds_blackbox_attacks_by_name(trained):
    model, x, y = trained
    assert 0.0 <= attacks.robust_accuracy(model, x, y, "square", eps=0.1, queries=50) <= 1.0
    assert 0.0 <= attacks.robust_accuracy(model, x, y, "spsa", eps=0.1, steps=3, samples=4) <= 1.0


@pytest.mark.parametrize("name", ["square_attack", "spsa"])
@pytest.mark.parametrize(
    "bad",
    [
        {"eps": -0.1},
        {"eps": float("nan")},
        {"x": "nan"},
        {"x": "range"},
        {"y": "out of range"},
        {"y": "wrong length"},
        {"model": "not a model"},
        {"seed": -1},
    ],
)
def test_bad_common_arguments_raise_value_error(trained, name, bad):
    model, x, y = trained
    x, y = x[:8].clone(), y[:8].clone()
    kwargs = {"eps": 0.1, "seed": 0}
    if bad.get("x") == "nan":
        x[0, 0, 0, 0] = float("nan")
    elif bad.get("x") == "range":
        x[0, 0, 0, 0] = 1.5
    elif bad.get("y") == "out of range":
        y[0] = 10
    elif bad.get("y") == "wrong length":
        y = y[:-1]
    elif "model" in bad:
        model = bad["model"]
    else:
        kwargs.update(bad)
    eps = kwargs.pop("eps")
    with pytest.raises(ValueError):
        getattr(blackbox, name)(model, x, y, eps, **kwargs)


@pytest.mark.parametrize(
    "call",
    [
        lambda m, x, y: blackbox.square_attack(m, x, y, 0.1, queries=0),
        lambda m, x, y: blackbox.square_attack(m, x, y, 0.1, p_init=0.0),
        lambda m, x, y: blackbox.square_attack(m, x, y, 0.1, p_init=1.5),
        lambda m, x, y: blackbox.spsa(m, x, y, 0.1, steps=0),
        lambda m, x, y: blackbox.spsa(m, x, y, 0.1, samples=0),
        lambda m, x, y: blackbox.spsa(m, x, y, 0.1, delta=0.0),
        lambda m, x, y: blackbox.spsa(m, x, y, 0.1, alpha=-1.0),
    ],
)
def test_bad_attack_specific_arguments_raise_value_error(trained, call):
    model, x, y = trained
    with pytest.raises(ValueError):
        call(model, x[:4], y[:4])
