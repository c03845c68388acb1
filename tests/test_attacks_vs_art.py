"""Cross-check gdsec.attacks against IBM's Adversarial Robustness Toolbox (ART) on a small digits CNN.

FGSM must match ART exactly; PGD must leave no more robust accuracy than ART (+2 points, 3 of the
150 digits; measured between -2.7 and +0.7 points); DeepFool, with the same overshoot and iteration
cap, must succeed at least as often as ART with a mean L2 no larger than ART's (measured: 0.98x).
C&W L2 runs with the same budget on both sides (initial constant 1, 3 binary-search rounds of 50
Adam steps, learning rate 0.01, on 60 digits): ours must succeed at least as often, with a mean L2
at most 0.7x ART's (measured: 0.59x, both fooling every digit).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from gdsec import attacks

from helpers import in_ci

if not in_ci():
    pytest.importorskip("art", reason="adversarial-robustness-toolbox is a test requirement")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from art.attacks.evasion import (
        CarliniL2Method,
        DeepFool,
        FastGradientMethod,
        ProjectedGradientDescent,
    )
    from art.estimators.classification import PyTorchClassifier

N_POINTS = 150


@pytest.fixture(scope="module")
def setting(digits, digits_cnn) -> dict:
    """The shared digits CNN, its ART wrapper and the first 150 test digits."""
    model = digits_cnn
    classifier = PyTorchClassifier(
        model=model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(1, 8, 8),
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )
    x, y = digits.x_test[:N_POINTS], digits.y_test[:N_POINTS]
    return {"model": model, "art": classifier, "x": x, "y": y, "xn": x.numpy(), "yn": y.numpy()}


def _fooled(
    model: torch.nn.Module, x_adv: np.ndarray | torch.Tensor, target: torch.Tensor
) -> np.ndarray:
    with torch.no_grad():
        return (model(torch.as_tensor(x_adv)).argmax(1) != target).numpy()


def _l2(x: np.ndarray, x_adv: np.ndarray | torch.Tensor) -> np.ndarray:
    return np.linalg.norm((np.asarray(x_adv) - x).reshape(len(x), -1), axis=1)


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.2])
def test_fgsm_identical(setting: dict, eps: float) -> None:
    ours = attacks.fgsm(setting["model"], setting["x"], setting["y"], eps).numpy()
    theirs = FastGradientMethod(setting["art"], eps=eps, batch_size=N_POINTS).generate(
        setting["xn"], setting["yn"]
    )
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("norm", "eps"), [("inf", 0.05), ("inf", 0.1), ("2", 0.5), ("2", 1.0)])
def test_pgd_at_least_as_strong(setting: dict, norm: str, eps: float) -> None:
    model, x, y = setting["model"], setting["x"], setting["y"]
    steps = 40
    alpha = max(2.5 * eps / steps, eps / 10)  # our default step, given to ART explicitly
    ours = attacks.robust_accuracy(model, x, y, "pgd", eps=eps, norm=norm, steps=steps, seed=0)
    art = ProjectedGradientDescent(
        setting["art"],
        norm=np.inf if norm == "inf" else 2,
        eps=eps,
        eps_step=alpha,
        max_iter=steps,
        num_random_init=1,
        batch_size=N_POINTS,
        verbose=False,
    )
    torch.manual_seed(0)
    np.random.seed(0)
    x_art = art.generate(setting["xn"], setting["yn"])
    theirs = attacks.robust_accuracy(model, x, y, lambda m, a, b: torch.as_tensor(x_art))
    assert ours <= theirs + 0.02, f"PGD-{norm} eps={eps}: ours {ours:.3f} vs ART {theirs:.3f}"


def test_cw_l2_at_least_as_strong_with_the_same_budget(setting: dict) -> None:
    rows = 60
    model, x, y, xn = (
        setting["model"],
        setting["x"][:rows],
        setting["y"][:rows],
        setting["xn"][:rows],
    )
    ours = attacks.cw_l2(model, x, y, c=1.0, steps=50, search_steps=3, lr=0.01)
    theirs = CarliniL2Method(
        setting["art"],
        confidence=0.0,
        learning_rate=0.01,
        binary_search_steps=3,
        max_iter=50,
        initial_const=1.0,
        batch_size=rows,
        verbose=False,
    ).generate(xn, setting["yn"][:rows])
    ok_ours, ok_art = _fooled(model, ours, y), _fooled(model, theirs, y)
    assert ok_ours.mean() >= ok_art.mean()
    both = ok_ours & ok_art
    assert _l2(xn, ours)[both].mean() <= 0.7 * _l2(xn, theirs)[both].mean()


def test_deepfool_at_least_as_strong(setting: dict) -> None:
    model, x, xn = setting["model"], setting["x"], setting["xn"]
    with torch.no_grad():
        predicted = model(x).argmax(1)
    ours = attacks.deepfool(model, x, overshoot=0.02, steps=50)
    theirs = DeepFool(
        setting["art"], epsilon=0.02, max_iter=50, batch_size=N_POINTS, verbose=False
    ).generate(xn)
    ok_ours, ok_art = _fooled(model, ours, predicted), _fooled(model, theirs, predicted)
    assert ok_ours.mean() >= ok_art.mean()
    both = ok_ours & ok_art
    assert _l2(xn, ours)[both].mean() <= _l2(xn, theirs)[both].mean()
