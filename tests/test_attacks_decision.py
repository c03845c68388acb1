"""gdsec.attacks.decision: HopSkipJump reads only labels, keeps its query budget, and finds the boundary.

The contract (inputs untouched, eval mode restored, output in the ball, determinism, seeds) is
checked for every registry entry in ``tests/test_attacks_core.py``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gdsec import attacks
from gdsec.attacks import hop_skip_jump


class Flat(nn.Module):
    """The same decisions as ``model``, flat scores: ``5 * onehot(argmax) + linspace(0, 0.5, C)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(x)
        onehot = nn.functional.one_hot(z.argmax(1), z.shape[1]).to(z.dtype)
        return 5 * onehot + torch.linspace(0, 0.5, z.shape[1], dtype=z.dtype)


class Monotone(nn.Module):
    """The same decisions as ``model``, scores through a fresh random increasing map per row and call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.generator = model, torch.Generator().manual_seed(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(x)
        scale, shift = torch.rand(2, len(z), 1, generator=self.generator)
        return (0.5 + scale) * (z + z**3) + 10 * shift


class Counting(nn.Module):
    """``model``, counting the rows it is asked about."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.rows = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += len(x)
        return self.model(x)


def linear_two_class(d: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A two-class linear model through the box centre, 20 rows inside the box, their exact L2 distances."""
    generator = torch.Generator().manual_seed(0)
    model = nn.Linear(d, 2)
    with torch.no_grad():
        model.weight.copy_(torch.randn(2, d, generator=generator))
        model.bias.copy_(-model.weight.sum(1) / 2)
        x = 0.3 + 0.4 * torch.rand(20, d, generator=generator)
        y = model(x).argmax(1)
    w = model.weight[1] - model.weight[0]
    return model, x, y, ((x - 0.5) @ w).abs().detach() / w.norm().item()


def fooled(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per row: is ``x_adv`` misclassified?"""
    with torch.no_grad():
        return model(x_adv).argmax(1) != y


def test_l2_finds_the_exact_boundary_of_a_two_class_linear_model() -> None:
    model, x, y, distance = linear_two_class(16)
    eps = distance.median().item()
    x_adv = hop_skip_jump(model, x, y, eps, norm="2", queries=1000)
    hit = fooled(model, x_adv, y)
    assert not hit[distance > eps].any(), "fooled a row farther than eps: not a real boundary"
    assert hit[distance < eps / 1.2].all(), (distance, hit)
    assert attacks.perturbation_norm(x, x_adv, norm="2").max() <= eps + 1e-6


def test_reads_only_labels(digits, digits_mlp) -> None:
    x, y = digits.x_test[:30], digits.y_test[:30]
    x_adv = hop_skip_jump(digits_mlp, x, y, 0.1, queries=300, seed=1)
    assert fooled(digits_mlp, x_adv, y).sum() >= 3
    for wrapper in (Flat(digits_mlp), Monotone(digits_mlp)):
        assert torch.equal(hop_skip_jump(wrapper, x, y, 0.1, queries=300, seed=1), x_adv)


@pytest.mark.parametrize("queries", [1, 2, 30, 150])
def test_every_forward_pass_of_a_row_is_one_of_its_queries(
    queries: int, digits, digits_mlp
) -> None:
    counting = Counting(digits_mlp)
    hop_skip_jump(counting, digits.x_test[:1], digits.y_test[:1], 0.1, queries=queries)
    assert counting.rows - 1 <= queries  # the contract asks about x[:1] once to count the classes
    with torch.no_grad():
        wrong = digits_mlp(digits.x_test).argmax(1) != digits.y_test
    counting = Counting(digits_mlp)
    x, y = digits.x_test[wrong], digits.y_test[wrong]
    assert torch.equal(hop_skip_jump(counting, x, y, 0.1, queries=150), x)
    assert counting.rows - 1 == len(x), "rows already misclassified must cost one query"


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_rows_it_moves_are_misclassified_and_in_the_ball(norm: str, digits, digits_mlp) -> None:
    x, y = digits.x_test[:40], digits.y_test[:40]
    for eps in (0.03, 0.1) if norm == "inf" else (0.2, 0.6):
        x_adv = hop_skip_jump(digits_mlp, x, y, eps, norm=norm, queries=300)
        moved = (x_adv != x).flatten(1).any(1)
        assert moved.any() and torch.equal(moved & fooled(digits_mlp, x_adv, y), moved)
        assert attacks.perturbation_norm(x, x_adv, norm=norm).max() <= eps + 1e-6


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"norm": "1"}, "norm"),
        ({"queries": 0}, "queries"),
        ({"queries": 1.5}, "queries"),
        ({"steps": 0}, "steps"),
        ({"seed": -1}, "seed"),
        ({"draws": 10}, "draws"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, argument: str, digits, digits_mlp) -> None:
    with pytest.raises(ValueError, match=argument):
        hop_skip_jump(digits_mlp, digits.x_test[:3], digits.y_test[:3], 0.1, **kwargs)


# ------------------------------------------------------------------ strength (integration)

QUERIES = 2000


@pytest.mark.integration
def test_strength_on_the_digits_mlp_against_white_box_and_square(digits, digits_mlp) -> None:
    x, y = digits.x_test[:100], digits.y_test[:100]
    clean = attacks.robust_accuracy(digits_mlp, x, y, lambda m, a, b: a.clone())
    white_box = attacks.evaluate(
        digits_mlp, x, y, 0.1, attacks=("apgd-ce", "apgd-t", "fab-t")
    ).robust_accuracy
    square = attacks.robust_accuracy(digits_mlp, x, y, "square_attack", eps=0.1, steps=QUERIES)
    hsj = attacks.robust_accuracy(digits_mlp, x, y, "hop_skip_jump", eps=0.1, queries=QUERIES)
    numbers = f"clean {clean:.2f}, HSJ {hsj:.2f}, Square {square:.2f}, white-box {white_box:.2f}"
    assert hsj < clean - 0.3, numbers
    assert hsj < white_box + 0.3, numbers  # labels only: weaker than scores or gradients
    l2 = attacks.robust_accuracy(
        digits_mlp, x, y, "hop_skip_jump", eps=0.5, norm="2", queries=QUERIES
    )
    l2_white_box = attacks.evaluate(
        digits_mlp, x, y, 0.5, norm="2", attacks=("apgd-ce", "apgd-t", "fab-t")
    ).robust_accuracy
    assert l2 < clean - 0.25 and l2 < l2_white_box + 0.3, (l2, l2_white_box, clean)


@pytest.mark.integration
def test_flat_scores_fool_square_but_not_hop_skip_jump(digits, digits_mlp) -> None:
    x, y = digits.x_test[:100], digits.y_test[:100]
    flat = Flat(digits_mlp)
    honest = attacks.robust_accuracy(digits_mlp, x, y, "hop_skip_jump", eps=0.1, queries=QUERIES)
    wrapped = attacks.robust_accuracy(flat, x, y, "hop_skip_jump", eps=0.1, queries=QUERIES)
    square = attacks.robust_accuracy(flat, x, y, "square_attack", eps=0.1, steps=QUERIES)
    assert wrapped == honest, (wrapped, honest)
    assert square > wrapped + 0.25, f"Square on flat scores {square:.2f}, HSJ {wrapped:.2f}"
