"""gdsec.attacks.query (Square, SPSA): they work from queries alone, keep their budgets, reject bad settings.

The contract itself is tested for every attack in ``test_attacks_core.py``.
"""

import pytest
import torch

from gdsec import attacks, train

QUERY_ATTACKS = {
    "square": lambda m, x, y, eps, seed=0: attacks.square_attack(
        m, x, y, eps, steps=200, seed=seed
    ),
    "spsa": lambda m, x, y, eps, seed=0: attacks.spsa(m, x, y, eps, steps=15, draws=16, seed=seed),
}


@pytest.fixture(scope="module")
def trained(digits, digits_mlp):
    return digits_mlp, digits.x_test[:120], digits.y_test[:120]


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(QUERY_ATTACKS))
def test_attacks_lower_accuracy_and_are_deterministic(trained, name):
    model, x, y = trained
    clean = train.accuracy(model, x, y)
    robust = attacks.robust_accuracy(
        model, x, y, lambda m, xs, ys: QUERY_ATTACKS[name](m, xs, ys, 0.2)
    )
    assert robust < clean - 0.4
    assert torch.equal(
        QUERY_ATTACKS[name](model, x, y, 0.1, seed=4), QUERY_ATTACKS[name](model, x, y, 0.1, seed=4)
    )


def test_square_is_at_least_as_strong_as_fgsm_at_a_larger_budget(trained):
    model, x, y = trained
    square = attacks.robust_accuracy(model, x, y, "square_attack", eps=0.2, steps=500)
    fgsm = attacks.robust_accuracy(model, x, y, "fgsm", eps=0.2)
    assert square <= fgsm + 0.05


@pytest.mark.parametrize("name", sorted(QUERY_ATTACKS))
def test_tabular_inputs_and_zero_budget(name, blobs_mlp):
    model, x, y = blobs_mlp
    x_adv = QUERY_ATTACKS[name](model, x, y, 0.3)
    assert x_adv.shape == x.shape and (x_adv - x).abs().max() <= 0.3 + 1e-6
    assert attacks.robust_accuracy(
        model, x, y, lambda m, a, b: QUERY_ATTACKS[name](m, a, b, 0.3)
    ) < train.accuracy(model, x, y)
    assert torch.equal(QUERY_ATTACKS[name](model, x, y, 0.0), x)


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
    attacks.square_attack(counting, x, y, 0.1, steps=50)
    assert sum(rows_seen) - 1 <= 50 * len(x)  # minus the one-row shape probe


def test_robust_accuracy_finds_query_attacks_by_name(trained):
    model, x, y = trained
    assert 0.0 <= attacks.robust_accuracy(model, x, y, "square_attack", eps=0.1, steps=50) <= 1.0
    assert 0.0 <= attacks.robust_accuracy(model, x, y, "spsa", eps=0.1, steps=3, draws=4) <= 1.0


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda m, x, y: attacks.square_attack(m, x, y, 0.1, steps=0), "steps"),
        (lambda m, x, y: attacks.square_attack(m, x, y, 0.1, p_init=0.0), "p_init"),
        (lambda m, x, y: attacks.square_attack(m, x, y, 0.1, p_init=1.5), "p_init"),
        (lambda m, x, y: attacks.spsa(m, x, y, 0.1, steps=0), "steps"),
        (lambda m, x, y: attacks.spsa(m, x, y, 0.1, draws=0), "draws"),
        (lambda m, x, y: attacks.spsa(m, x, y, 0.1, delta=0.0), "delta"),
        (lambda m, x, y: attacks.spsa(m, x, y, 0.1, alpha=-1.0), "alpha"),
        (lambda m, x, y: attacks.spsa(m, x, y, 0.1, queries=10), "queries"),
    ],
)
def test_bad_attack_specific_arguments_raise_value_error(trained, call, argument):
    model, x, y = trained
    with pytest.raises(ValueError, match=argument):
        call(model, x[:4], y[:4])
