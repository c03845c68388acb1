"""Unit and property tests for gdsec.attacks: the contract every attack keeps, and that it works."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gdsec import attacks, data, models, train

SETTINGS = settings(max_examples=20, deadline=None, derandomize=True)


@pytest.fixture(scope="module")
def digits() -> data.Split:
    return data.load_digits()


@pytest.fixture(scope="module")
def cnn(digits: data.Split) -> torch.nn.Module:
    """A small digits CNN trained for a few epochs (about 97 % test accuracy)."""
    model = models.digits_cnn(channels=8, seed=0)
    train.train(model, digits.x_train, digits.y_train, optimizer="adam", lr=3e-3, epochs=8, batch_size=64, progress=False)
    return model


@pytest.fixture(scope="module")
def tabular() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """An MLP on 2-D blobs: tabular inputs of shape (N, 2)."""
    split = data.make_blobs_2d(200, n_classes=3, seed=1)
    model = models.mlp(2, 3, hidden=16, seed=0)
    train.train(model, split.x_train, split.y_train, optimizer="adam", lr=0.05, epochs=60, progress=False)
    return model, split.x_test, split.y_test


def run_attack(name: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    """Call attack ``name`` with small, fast settings."""
    if name == "fgsm":
        return attacks.fgsm(model, x, y, eps)
    if name == "pgd":
        return attacks.pgd(model, x, y, eps, steps=5, seed=0)
    if name == "pgd2":
        return attacks.pgd(model, x, y, 4 * eps, steps=5, norm="2", seed=0)
    if name == "cw_l2":
        return attacks.cw_l2(model, x, y, steps=20, search_steps=2)
    return attacks.deepfool(model, x, max_iter=10)


ALL = ["fgsm", "pgd", "pgd2", "cw_l2", "deepfool"]


# ------------------------------------------------------------------ the contract, for every attack


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("shape", ["images", "tabular"])
def test_contract(name: str, shape: str, digits: data.Split, cnn: torch.nn.Module, tabular) -> None:
    if shape == "images":
        model, x, y = cnn, digits.x_test[:40], digits.y_test[:40]
    else:
        model, x, y = tabular
    x_before = x.clone()
    model.train()
    grads = [torch.full_like(p, 0.5) for p in model.parameters()]
    for p, g in zip(model.parameters(), grads, strict=True):
        p.grad = g.clone()
    x_adv = run_attack(name, model, x, y)
    assert model.training, "model.training was not restored"
    model.eval()
    for p, g in zip(model.parameters(), grads, strict=True):
        assert torch.equal(p.grad, g), "parameter .grad was modified"
        p.grad = None
    assert torch.equal(x, x_before), "x was modified"
    assert x_adv is not x and x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert not x_adv.requires_grad and x_adv.grad_fn is None
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    if name in ("fgsm", "pgd"):
        assert attacks.perturbation_norm(x, x_adv, norm="inf").max() <= 0.1 + 1e-6
    if name == "pgd2":
        assert attacks.perturbation_norm(x, x_adv, norm="2").max() <= 0.4 + 1e-5


@pytest.mark.parametrize("name", ALL)
def test_batch_of_one_and_none_grads(name: str, digits: data.Split, cnn: torch.nn.Module) -> None:
    x, y = digits.x_test[:1], digits.y_test[:1]
    x_adv = run_attack(name, cnn, x, y)
    assert x_adv.shape == (1, 1, 8, 8)
    assert all(p.grad is None for p in cnn.parameters())


@pytest.mark.parametrize("name", ALL)
def test_deterministic(name: str, digits: data.Split, cnn: torch.nn.Module) -> None:
    x, y = digits.x_test[:30], digits.y_test[:30]
    assert torch.equal(run_attack(name, cnn, x, y), run_attack(name, cnn, x, y))


def test_float64(digits: data.Split, cnn: torch.nn.Module) -> None:
    model = models.digits_cnn(channels=8, seed=0).double()
    model.load_state_dict({k: v.double() for k, v in cnn.state_dict().items()})
    x, y = digits.x_test[:20].double(), digits.y_test[:20]
    for name in ALL:
        assert run_attack(name, model, x, y).dtype == torch.float64


# ------------------------------------------------------------------ property tests (hypothesis)


@SETTINGS
@given(
    eps=st.floats(0.0, 0.6),
    steps=st.integers(1, 6),
    norm=st.sampled_from(["inf", "2"]),
    random_start=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
    rows=st.integers(1, 12),
)
def test_pgd_stays_in_ball(eps, steps, norm, random_start, seed, rows, digits, cnn) -> None:
    x, y = digits.x_test[:rows], digits.y_test[:rows]
    budget = eps if norm == "inf" else 4 * eps
    x_adv = attacks.pgd(cnn, x, y, budget, steps=steps, norm=norm, random_start=random_start, seed=seed)
    assert attacks.perturbation_norm(x, x_adv, norm=norm).max() <= budget + 1e-5
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert torch.equal(x, digits.x_test[:rows])


@SETTINGS
@given(
    d=st.integers(1, 20),
    n=st.integers(1, 8),
    eps=st.floats(0.0, 1.0),
    norm=st.sampled_from(["inf", "2"]),
    training=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_pgd_any_tabular_shape(d, n, eps, norm, training, seed) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=gen)
    y = torch.randint(0, 3, (n,), generator=gen)
    model = models.mlp(d, 3, hidden=8, seed=seed)
    model.train(training)
    x0 = x.clone()
    x_adv = attacks.pgd(model, x, y, eps, steps=3, norm=norm, seed=seed)
    assert model.training == training
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(x, x0)
    assert attacks.perturbation_norm(x, x_adv, norm=norm).max() <= eps + 1e-5
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    x_fgsm = attacks.fgsm(model, x, y, eps)
    assert (x_fgsm - x).abs().max() <= eps + 1e-6 and x_fgsm.min() >= 0 and x_fgsm.max() <= 1


# ------------------------------------------------------------------ the attacks actually work


def test_fgsm_raises_loss_on_linear_model(digits: data.Split) -> None:
    model = models.logistic_regression(seed=0)
    train.train(model, digits.x_train, digits.y_train, optimizer="adam", lr=0.05, epochs=30, progress=False)
    x, y = digits.x_test, digits.y_test
    loss = torch.nn.functional.cross_entropy
    with torch.no_grad():
        assert loss(model(attacks.fgsm(model, x, y, 0.1)), y) > loss(model(x), y) + 0.5


def test_iterative_beats_single_step(digits: data.Split, cnn: torch.nn.Module) -> None:
    x, y = digits.x_test, digits.y_test
    clean = train.accuracy(cnn, x, y)
    fgsm_acc = attacks.robust_accuracy(cnn, x, y, "fgsm", eps=0.1)
    pgd_acc = attacks.robust_accuracy(cnn, x, y, "pgd", eps=0.1, steps=20, seed=0)
    assert pgd_acc <= fgsm_acc < clean
    assert attacks.robust_accuracy(cnn, x, y, "pgd", eps=0.5, steps=20, seed=0) < 0.05


def test_restarts_never_weaker(digits: data.Split, cnn: torch.nn.Module) -> None:
    x, y = digits.x_test[:150], digits.y_test[:150]
    one = attacks.robust_accuracy(cnn, x, y, "pgd", eps=0.08, steps=10, seed=3)
    three = attacks.robust_accuracy(cnn, x, y, "pgd", eps=0.08, steps=10, seed=3, restarts=3)
    assert three <= one


def test_cw_default_succeeds(digits: data.Split, cnn: torch.nn.Module) -> None:
    x, y = digits.x_test[:100], digits.y_test[:100]
    x_adv = attacks.cw_l2(cnn, x, y)
    with torch.no_grad():
        fooled = (cnn(x_adv).argmax(1) != y).float().mean().item()
    assert fooled >= 0.98
    assert attacks.perturbation_norm(x, x_adv).mean() < 1.5


def test_cw_kappa_gives_confident_examples(digits: data.Split, cnn: torch.nn.Module) -> None:
    x, y = digits.x_test[:40], digits.y_test[:40]
    plain = attacks.cw_l2(cnn, x, y, steps=50, search_steps=3)
    confident = attacks.cw_l2(cnn, x, y, kappa=5.0, steps=50, search_steps=3)
    with torch.no_grad():
        correct = cnn(x).argmax(1) == y
        m = attacks.margin(cnn(confident), y)[correct]
    assert (m <= -5 + 1e-4).float().mean() > 0.9
    assert attacks.perturbation_norm(x, confident).mean() > attacks.perturbation_norm(x, plain).mean()


def test_deepfool_flips_prediction(digits: data.Split, cnn: torch.nn.Module) -> None:
    x = digits.x_test[:100]
    x_adv = attacks.deepfool(cnn, x)
    with torch.no_grad():
        flipped = (cnn(x_adv).argmax(1) != cnn(x).argmax(1)).float().mean().item()
    assert flipped >= 0.98
    assert attacks.perturbation_norm(x, x_adv).mean() < 1.5


def test_minimal_attacks_smaller_than_pgd_budget(digits: data.Split, cnn: torch.nn.Module) -> None:
    """C&W is at least as economical as DeepFool on average (both minimise L2)."""
    x, y = digits.x_test[:80], digits.y_test[:80]
    cw = attacks.perturbation_norm(x, attacks.cw_l2(cnn, x, y)).mean()
    df = attacks.perturbation_norm(x, attacks.deepfool(cnn, x)).mean()
    assert cw <= df * 1.05


def test_robust_accuracy_names_and_callables(digits: data.Split, cnn: torch.nn.Module) -> None:
    x, y = digits.x_test[:60], digits.y_test[:60]
    clean = train.accuracy(cnn, x, y)
    assert attacks.robust_accuracy(cnn, x, y, lambda m, a, b: a.clone()) == pytest.approx(clean)
    assert attacks.robust_accuracy(cnn, x, y, "fgsm", eps=0.0) == pytest.approx(clean)
    by_name = attacks.robust_accuracy(cnn, x, y, "fgsm", eps=0.1)
    by_call = attacks.robust_accuracy(cnn, x, y, lambda m, a, b: attacks.fgsm(m, a, b, 0.1))
    assert by_name == pytest.approx(by_call)
    unlimited = attacks.robust_accuracy(cnn, x, y, "deepfool")
    budget = attacks.robust_accuracy(cnn, x, y, "deepfool", eps=0.3)
    assert unlimited <= budget <= clean
    assert attacks.robust_accuracy(cnn, x, y, "cw_l2", eps=0.0, steps=10, search_steps=1) == pytest.approx(clean)


# ------------------------------------------------------------------ bad arguments


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda m, x, y: attacks.fgsm(m, x, y, -0.1), "eps"),
        (lambda m, x, y: attacks.fgsm(m, x, y, math.nan), "eps"),
        (lambda m, x, y: attacks.fgsm(m, x * 2, y, 0.1), "x"),
        (lambda m, x, y: attacks.fgsm(m, x - 1, y, 0.1), "x"),
        (lambda m, x, y: attacks.fgsm(m, x.masked_fill(x > 0.5, math.nan), y, 0.1), "x"),
        (lambda m, x, y: attacks.fgsm(m, x[0, 0, 0], y, 0.1), "x"),
        (lambda m, x, y: attacks.fgsm(m, x, y + 10, 0.1), "y"),
        (lambda m, x, y: attacks.fgsm(m, x, y - 20, 0.1), "y"),
        (lambda m, x, y: attacks.fgsm(m, x, y[:-1], 0.1), "y"),
        (lambda m, x, y: attacks.fgsm(m, x, y.float(), 0.1), "y"),
        (lambda m, x, y: attacks.fgsm("model", x, y, 0.1), "model"),
        (lambda m, x, y: attacks.pgd(m, x, y, 0.1, steps=0), "steps"),
        (lambda m, x, y: attacks.pgd(m, x, y, 0.1, alpha=-1.0), "alpha"),
        (lambda m, x, y: attacks.pgd(m, x, y, 0.1, norm="1"), "norm"),
        (lambda m, x, y: attacks.pgd(m, x, y, 0.1, seed=-1), "seed"),
        (lambda m, x, y: attacks.pgd(m, x, y, 0.1, restarts=0), "restarts"),
        (lambda m, x, y: attacks.pgd(m, x, y, 0.1, random_start="yes"), "random_start"),
        (lambda m, x, y: attacks.pgd(m, x, y, -1.0), "eps"),
        (lambda m, x, y: attacks.cw_l2(m, x, y, c=0.0), "c"),
        (lambda m, x, y: attacks.cw_l2(m, x, y, kappa=-1.0), "kappa"),
        (lambda m, x, y: attacks.cw_l2(m, x, y, steps=0), "steps"),
        (lambda m, x, y: attacks.cw_l2(m, x, y, lr=0.0), "lr"),
        (lambda m, x, y: attacks.cw_l2(m, x, y, search_steps=0), "search_steps"),
        (lambda m, x, y: attacks.deepfool(m, x, overshoot=-0.1), "overshoot"),
        (lambda m, x, y: attacks.deepfool(m, x, max_iter=0), "max_iter"),
        (lambda m, x, y: attacks.deepfool(m, x * 3), "x"),
        (lambda m, x, y: attacks.robust_accuracy(m, x, y, "pgd"), "eps"),
        (lambda m, x, y: attacks.robust_accuracy(m, x, y, "nope", eps=0.1), "attack"),
        (lambda m, x, y: attacks.robust_accuracy(m, x, y, "fgsm", eps=-0.1), "eps"),
        (lambda m, x, y: attacks.perturbation_norm(x, x, norm="l1"), "norm"),
    ],
)
def test_bad_arguments(call, argument: str, digits: data.Split, cnn: torch.nn.Module) -> None:
    x, y = digits.x_test[:5], digits.y_test[:5]
    with pytest.raises(ValueError, match=argument):
        call(cnn, x, y)


def test_norm_aliases(digits: data.Split, cnn: torch.nn.Module) -> None:
    x, y = digits.x_test[:10], digits.y_test[:10]
    a = attacks.pgd(cnn, x, y, 0.5, norm=2, steps=3, seed=1)
    b = attacks.pgd(cnn, x, y, 0.5, norm="2", steps=3, seed=1)
    c = attacks.pgd(cnn, x, y, 0.1, norm=math.inf, steps=3, seed=1)
    assert torch.equal(a, b) and attacks.perturbation_norm(x, c, norm="inf").max() <= 0.1 + 1e-6
