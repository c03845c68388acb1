"""gdsec.attacks.minimal: C&W L2 and DeepFool find small perturbations and reject bad settings.

The contract itself is tested for every attack in ``test_attacks_core.py``.
"""

from __future__ import annotations

import pytest
import torch

from gdsec import attacks


@pytest.mark.integration
def test_cw_default_succeeds(digits, digits_cnn) -> None:
    x, y = digits.x_test[:100], digits.y_test[:100]
    x_adv = attacks.cw_l2(digits_cnn, x, y)
    with torch.no_grad():
        fooled = (digits_cnn(x_adv).argmax(1) != y).float().mean().item()
    assert fooled >= 0.98
    assert attacks.perturbation_norm(x, x_adv).mean() < 1.5


@pytest.mark.integration
def test_cw_kappa_gives_confident_examples(digits, digits_cnn) -> None:
    x, y = digits.x_test[:40], digits.y_test[:40]
    plain = attacks.cw_l2(digits_cnn, x, y, steps=50, search_steps=3)
    confident = attacks.cw_l2(digits_cnn, x, y, kappa=5.0, steps=50, search_steps=3)
    with torch.no_grad():
        correct = digits_cnn(x).argmax(1) == y
        m = attacks.margin(digits_cnn(confident), y)[correct]
    assert (m <= -5 + 1e-4).float().mean() > 0.9
    assert (
        attacks.perturbation_norm(x, confident).mean() > attacks.perturbation_norm(x, plain).mean()
    )


def test_deepfool_flips_prediction(digits, digits_cnn) -> None:
    x = digits.x_test[:100]
    x_adv = attacks.deepfool(digits_cnn, x)
    with torch.no_grad():
        flipped = (digits_cnn(x_adv).argmax(1) != digits_cnn(x).argmax(1)).float().mean().item()
    assert flipped >= 0.98
    assert attacks.perturbation_norm(x, x_adv).mean() < 1.5


def test_deepfool_steps_to_the_nearest_boundary_of_a_linear_model() -> None:
    """On an affine model the linearisation is exact: one step lands on the NEAREST boundary.

    The nearest boundary is found by brute force over the classes, |z_k - z_y| / ||w_k - w_y||; the
    inputs sit mid-box with boundaries closer than the box edges, so clamping never acts.
    """
    generator = torch.Generator().manual_seed(0)
    model = torch.nn.Linear(20, 5)
    with torch.no_grad():
        model.weight.copy_(torch.randn(5, 20, generator=generator))
        model.bias.copy_(torch.randn(5, generator=generator))
    x = 0.4 + 0.2 * torch.rand(64, 20, generator=generator)
    with torch.no_grad():
        logits = model(x)
    label = logits.argmax(1)
    rows = torch.arange(len(x))
    w_diff = model.weight.detach()[None] - model.weight.detach()[label][:, None]  # (N, K, d)
    distance = (logits - logits[rows, label][:, None]).abs() / w_diff.norm(dim=2)
    distance[rows, label] = torch.inf
    nearest, farthest = distance.min(1).values, distance.where(distance.isfinite(), 0).max(1).values
    assert nearest.max() < 0.2 and (farthest > 1.5 * nearest).float().mean() > 0.9, (
        "a test that can tell them apart"
    )
    x_adv = attacks.deepfool(model, x, overshoot=0.02)
    moved = attacks.perturbation_norm(x, x_adv)
    assert ((x_adv > 0) & (x_adv < 1)).all(), "clamping must not act"
    with torch.no_grad():
        assert (model(x_adv).argmax(1) != label).all()
    # the step reaches the boundary (+1e-4 in logit units) and is scaled by 1 + overshoot
    torch.testing.assert_close(moved, 1.02 * nearest, rtol=2e-3, atol=1e-4)


@pytest.mark.integration
def test_deepfool_with_labels_attacks_them(digits, digits_cnn) -> None:
    """Given y, DeepFool attacks y: the same as without y on correct rows, untouched on wrong ones."""
    x, y = digits.x_test, digits.y_test
    with torch.no_grad():
        correct = digits_cnn(x).argmax(1) == y
    assert (~correct).any()
    with_y, without = attacks.deepfool(digits_cnn, x, y), attacks.deepfool(digits_cnn, x)
    assert torch.allclose(with_y[correct], without[correct])
    assert torch.equal(with_y[~correct], x[~correct])
    other = (y + 1) % 10  # labels the model does not predict: nothing to do
    assert torch.equal(attacks.deepfool(digits_cnn, x[correct], other[correct]), x[correct])


@pytest.mark.integration
def test_minimal_attacks_cw_at_least_as_economical_as_deepfool(digits, digits_cnn) -> None:
    x, y = digits.x_test[:80], digits.y_test[:80]
    cw = attacks.perturbation_norm(x, attacks.cw_l2(digits_cnn, x, y)).mean()
    df = attacks.perturbation_norm(x, attacks.deepfool(digits_cnn, x)).mean()
    assert cw <= df * 1.05


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda m, x, y: attacks.cw_l2(m, x, y, c=0.0), "c"),
        (lambda m, x, y: attacks.cw_l2(m, x, y, kappa=-1.0), "kappa"),
        (lambda m, x, y: attacks.cw_l2(m, x, y, steps=0), "steps"),
        (lambda m, x, y: attacks.cw_l2(m, x, y, lr=0.0), "lr"),
        (lambda m, x, y: attacks.cw_l2(m, x, y, search_steps=0), "search_steps"),
        (lambda m, x, y: attacks.cw_l2(m, x, y, seed=0), "seed"),
        (lambda m, x, y: attacks.deepfool(m, x, overshoot=-0.1), "overshoot"),
        (lambda m, x, y: attacks.deepfool(m, x, steps=0), "steps"),
        (lambda m, x, y: attacks.deepfool(m, x * 3), "x"),
        (lambda m, x, y: attacks.deepfool(m, x, y + 10), "y"),
    ],
)
def test_bad_arguments(call, argument: str, digits, digits_cnn) -> None:
    with pytest.raises(ValueError, match=argument):
        call(digits_cnn, digits.x_test[:5], digits.y_test[:5])
