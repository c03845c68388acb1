"""gdsec.attacks._core and the registry: the contract every attack keeps, checked over every entry."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch

import gdsec.attacks
from gdsec import attacks, models

#: Small, fast settings for every registry entry (plus variants): name -> (attack name, settings).
FAST = {
    "fgsm": ("fgsm", {}),
    "pgd": ("pgd", {"steps": 5}),
    "pgd_l2": ("pgd", {"steps": 5, "norm": "2"}),
    "apgd": ("apgd", {"steps": 5}),
    "apgd_l2_dlr": ("apgd", {"steps": 5, "norm": "2", "loss": "dlr"}),
    "apgd_targeted": ("apgd", {"steps": 3, "targeted": True}),
    "fab": ("fab", {"steps": 5}),
    "cw_l2": ("cw_l2", {"steps": 20, "search_steps": 2}),
    "deepfool": ("deepfool", {"steps": 10}),
    "square_attack": ("square_attack", {"steps": 50}),
    "spsa": ("spsa", {"steps": 5, "draws": 8}),
    "hop_skip_jump": ("hop_skip_jump", {"queries": 150}),
}
EPS = 0.1


def run(
    case: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, **extra: object
) -> torch.Tensor:
    """Run registry case ``case`` at budget ``EPS`` (L2 variants at 4 * EPS)."""
    name, settings = FAST[case]
    spec = attacks.ATTACK_SPECS[name]
    settings = {**settings, **extra}
    if not spec.bounded:
        return spec.fn(model, x, y, **settings)
    return spec.fn(model, x, y, 4 * EPS if settings.get("norm") == "2" else EPS, **settings)


def test_fast_settings_cover_the_registry() -> None:
    assert {name for name, _ in FAST.values()} == set(attacks.ATTACK_SPECS)


def test_registry_names_are_public_attributes() -> None:
    for name, spec in attacks.ATTACK_SPECS.items():
        assert (
            hasattr(gdsec.attacks, name) and name in dir(gdsec.attacks) and name in attacks.__all__
        )
        assert getattr(gdsec.attacks, name) is spec.fn
    assert not hasattr(attacks, "ALIASES") and not hasattr(attacks, "ATTACKS")


def test_registry_facts() -> None:
    bounded = {n for n, s in attacks.ATTACK_SPECS.items() if s.bounded}
    randomised = {n for n, s in attacks.ATTACK_SPECS.items() if s.randomised}
    assert bounded == {"fgsm", "pgd", "apgd", "fab", "square_attack", "spsa", "hop_skip_jump"}
    assert randomised == {"pgd", "apgd", "fab", "square_attack", "spsa", "hop_skip_jump"}
    assert attacks.ATTACK_SPECS["pgd"].settings == (
        "alpha",
        "steps",
        "norm",
        "random_start",
        "seed",
        "restarts",
    )


def test_no_import_cycle_and_no_lazy_imports_in_the_package() -> None:
    package = Path(gdsec.attacks.__file__).parent
    allowed = {
        "gdsec.models",
        "gdsec.streams",
        "gdsec.validation",
        "gdsec.seeds.stats",
    }  # stats: the one Wilson interval
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                assert id(node) in top_level, f"{path.name}: import inside a function"
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gdsec"):
                assert node.module in allowed or node.module.startswith("gdsec.attacks."), (
                    path.name,
                    node.module,
                )
        assert "importlib" not in path.read_text() and "__getattr__" not in path.read_text()


# ------------------------------------------------------------------ the contract, for every attack


@pytest.mark.parametrize("case", sorted(FAST))
@pytest.mark.parametrize("shape", ["images", "tabular"])
def test_contract(case: str, shape: str, digits, digits_cnn, blobs_mlp) -> None:
    if shape == "images":
        model, x, y = digits_cnn, digits.x_test[:40], digits.y_test[:40]
    else:
        model, x, y = blobs_mlp
    x_before = x.clone()
    model.train()
    grads = [torch.full_like(p, 0.5) for p in model.parameters()]
    for p, g in zip(model.parameters(), grads, strict=True):
        p.grad = g.clone()
    try:
        x_adv = run(case, model, x, y)
        assert model.training, "model.training was not restored"
        for p, g in zip(model.parameters(), grads, strict=True):
            assert torch.equal(p.grad, g), "parameter .grad was modified"
    finally:
        model.eval()
        for p in model.parameters():
            p.grad = None
    assert torch.equal(x, x_before), "x was modified"
    assert x_adv is not x and x_adv.data_ptr() != x.data_ptr()
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert not x_adv.requires_grad and x_adv.grad_fn is None
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    name, settings = FAST[case]
    if attacks.ATTACK_SPECS[name].bounded:
        norm = settings.get("norm", "inf")
        budget = 4 * EPS if norm == "2" else EPS
        assert attacks.perturbation_norm(x, x_adv, norm=norm).max() <= budget + 1e-5
    with torch.no_grad():
        fooled = (model(x_adv).argmax(1) != y).float().mean()
    assert fooled > 0, f"{case} fooled nothing"


@pytest.mark.parametrize("case", sorted(FAST))
def test_batch_of_one_and_none_grads(case: str, digits, digits_cnn, blobs_mlp) -> None:
    x_adv = run(case, digits_cnn, digits.x_test[:1], digits.y_test[:1])
    assert x_adv.shape == (1, 1, 8, 8)
    assert all(p.grad is None for p in digits_cnn.parameters())
    model, x, y = blobs_mlp
    assert run(case, model, x[:1], y[:1]).shape == (1, 2)


@pytest.mark.parametrize("case", sorted(FAST))
def test_deterministic_with_default_arguments(case: str, digits, digits_cnn) -> None:
    x, y = digits.x_test[:30], digits.y_test[:30]
    assert torch.equal(run(case, digits_cnn, x, y), run(case, digits_cnn, x, y))


# FAB's seed only places its later restarts, which return x unless they fool a row within eps.
@pytest.mark.parametrize(
    "case", [c for c, (n, _) in FAST.items() if attacks.ATTACK_SPECS[n].randomised and n != "fab"]
)
def test_seed_changes_the_draw(case: str, digits, digits_cnn) -> None:
    x, y = digits.x_test[:30], digits.y_test[:30]
    assert torch.equal(run(case, digits_cnn, x, y, seed=5), run(case, digits_cnn, x, y, seed=5))
    assert not torch.equal(run(case, digits_cnn, x, y, seed=5), run(case, digits_cnn, x, y, seed=6))


def test_pgd_default_seed_is_reproducible(digits, digits_cnn) -> None:
    x, y = digits.x_test[:50], digits.y_test[:50]
    assert torch.equal(attacks.pgd(digits_cnn, x, y, 0.1), attacks.pgd(digits_cnn, x, y, 0.1))


@pytest.mark.integration
def test_float64(digits, digits_cnn) -> None:
    model = models.digits_cnn(channels=8, seed=0).double()
    model.load_state_dict({k: v.double() for k, v in digits_cnn.state_dict().items()})
    x, y = digits.x_test[:12].double(), digits.y_test[:12]
    for case in FAST:
        assert run(case, model, x, y).dtype == torch.float64, case


@pytest.mark.parametrize("case", sorted(FAST))
def test_bad_inputs_raise_value_error_naming_them(case: str, digits, digits_cnn) -> None:
    x, y = digits.x_test[:5], digits.y_test[:5]
    bad = [
        ((digits_cnn, x * 2, y), "x"),
        ((digits_cnn, x - 1, y), "x"),
        ((digits_cnn, x.masked_fill(x > 0.5, math.nan), y), "x"),
        ((digits_cnn, x[0, 0, 0], y), "x"),
        ((digits_cnn, x, y + 10), "y"),
        ((digits_cnn, x, y[:-1]), "y"),
        ((digits_cnn, x, y.float()), "y"),
        (("model", x, y), "model"),
    ]
    for args, argument in bad:
        with pytest.raises(ValueError, match=argument):
            run(case, *args)
    with pytest.raises(ValueError, match="colour"):
        run(case, digits_cnn, x, y, colour=3)


@pytest.mark.parametrize("name", [n for n, s in attacks.ATTACK_SPECS.items() if s.bounded])
@pytest.mark.parametrize("eps", [-0.1, math.nan, "0.1"])
def test_bad_eps(name: str, eps: object, digits, digits_cnn) -> None:
    with pytest.raises(ValueError, match="eps"):
        attacks.ATTACK_SPECS[name].fn(digits_cnn, digits.x_test[:4], digits.y_test[:4], eps)


@pytest.mark.parametrize("name", [n for n, s in attacks.ATTACK_SPECS.items() if s.randomised])
def test_bad_seed_even_at_zero_budget(name: str, digits, digits_cnn) -> None:
    with pytest.raises(ValueError, match="seed"):
        attacks.ATTACK_SPECS[name].fn(
            digits_cnn, digits.x_test[:4], digits.y_test[:4], 0.0, seed=-1
        )


@pytest.mark.parametrize("name", [n for n, s in attacks.ATTACK_SPECS.items() if s.bounded])
def test_zero_budget_returns_a_copy(name: str, digits, digits_cnn) -> None:
    x, y = digits.x_test[:4], digits.y_test[:4]
    out = attacks.ATTACK_SPECS[name].fn(digits_cnn, x, y, 0.0)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()


def test_contract_rejects_output_of_the_wrong_shape(digits, digits_cnn) -> None:
    @attacks.attack_contract(bounded=True)
    def broken(model, x, y, eps):
        return x[:1]

    with pytest.raises(RuntimeError, match="contract"):
        broken(digits_cnn, digits.x_test[:3], digits.y_test[:3], 0.1)


# ------------------------------------------------------------------ shared helpers


def test_project_lands_in_ball_and_box() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(20, 7, generator=gen)
    far = x + 3 * torch.randn(20, 7, generator=gen)
    for norm, eps in (("inf", 0.1), ("2", 0.5)):
        p = attacks.project(x, far, eps, norm)
        assert attacks.perturbation_norm(x, p, norm=norm).max() <= eps + 1e-6
        assert p.min() >= 0 and p.max() <= 1
        inside = attacks.project(x, x + 0.01 * (far - x).sign(), eps, norm)
        assert torch.allclose(inside, (x + 0.01 * (far - x).sign()).clamp(0, 1))


def test_random_start_fills_the_ball() -> None:
    x = torch.full((400, 16), 0.5)
    for norm, eps in (("inf", 0.2), ("2", 0.4)):
        start = attacks.random_start(x, eps, norm, torch.Generator().manual_seed(1))
        size = attacks.perturbation_norm(x, start, norm=norm)
        assert size.max() <= eps + 1e-6 and size.mean() > 0.5 * eps


def test_keep_best_updates_only_better_rows() -> None:
    best, score = torch.zeros(4, 2), torch.tensor([1.0, 1.0, 1.0, 1.0])
    better = attacks.keep_best(
        best, score, torch.ones(2, 2), torch.tensor([0.5, 2.0]), torch.tensor([1, 3])
    )
    assert better.tolist() == [True, False]
    assert best[:, 0].tolist() == [0, 1, 0, 0] and score.tolist() == [1.0, 0.5, 1.0, 1.0]


def test_margin_and_dlr() -> None:
    logits = torch.tensor([[3.0, 1.0, 0.0, -1.0], [0.0, 2.0, 1.0, -2.0]])
    y = torch.tensor([0, 0])
    assert attacks.margin(logits, y).tolist() == [2.0, -2.0]
    dlr = attacks.dlr_loss(logits, y)
    assert torch.allclose(dlr, torch.tensor([-2.0 / 3.0, 2.0 / 2.0]))
    assert torch.allclose(
        attacks.dlr_loss(1000 * logits, y), dlr
    )  # invariant to scaling the logits
    target = torch.tensor([3, 2])
    assert torch.allclose(
        attacks.dlr_loss(logits, y, target), torch.tensor([-4.0 / 3.5, 1.0 / 3.0])
    )
    two = logits[:, :2]
    assert torch.equal(attacks.dlr_loss(two, y), -attacks.margin(two, y))


def test_input_gradient_leaves_parameters_alone(digits, digits_cnn) -> None:
    x, y = digits.x_test[:8], digits.y_test[:8]
    logits, grad = attacks.input_gradient(digits_cnn, x, y, attacks.dlr_loss)
    assert grad.shape == x.shape and grad.abs().sum() > 0 and not logits.requires_grad
    assert all(p.grad is None for p in digits_cnn.parameters())


# ------------------------------------------------------------------ robust_accuracy


@pytest.mark.integration
def test_robust_accuracy_names_callables_and_aliases(digits, digits_cnn, blobs_mlp) -> None:
    x, y = digits.x_test[:60], digits.y_test[:60]
    with torch.no_grad():
        clean = (digits_cnn(x).argmax(1) == y).float().mean().item()
    assert attacks.robust_accuracy(digits_cnn, x, y, lambda m, a, b: a.clone()) == pytest.approx(
        clean
    )
    assert attacks.robust_accuracy(digits_cnn, x, y, "fgsm", eps=0.0) == pytest.approx(clean)
    by_name = attacks.robust_accuracy(digits_cnn, x, y, "fgsm", eps=0.1)
    assert by_name == pytest.approx(
        attacks.robust_accuracy(digits_cnn, x, y, lambda m, a, b: attacks.fgsm(m, a, b, 0.1))
    )
    assert by_name < clean - 0.1
    unlimited = attacks.robust_accuracy(digits_cnn, x, y, "deepfool")
    budget = attacks.robust_accuracy(digits_cnn, x, y, "deepfool", eps=0.3)
    assert unlimited < budget <= clean
    assert attacks.robust_accuracy(
        digits_cnn, x, y, "cw_l2", eps=0.0, steps=10, search_steps=1
    ) == pytest.approx(clean)
    square = attacks.robust_accuracy(digits_cnn, x, y, "square_attack", eps=0.1, steps=30)
    assert (
        square
        == attacks.robust_accuracy(
            digits_cnn, x, y, lambda m, a, b: attacks.square_attack(m, a, b, 0.1, steps=30)
        )
        < clean
    )
    with pytest.raises(ValueError, match="attack"):
        attacks.robust_accuracy(digits_cnn, x, y, "square", eps=0.1)
    model, xt, yt = blobs_mlp
    assert 0.0 <= attacks.robust_accuracy(model, xt, yt, "apgd", eps=0.1, steps=5) <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"attack": "pgd"}, "eps"),
        ({"attack": "nope", "eps": 0.1}, "attack"),
        ({"attack": "fgsm", "eps": -0.1}, "eps"),
        ({"attack": "pgd", "eps": 0.1, "iters": 3}, "iters"),
        ({"attack": "deepfool", "eps": 0.1, "max_iter": 3, "colour": 1}, "colour, max_iter"),
        ({"attack": lambda m, a, b: a, "steps": 3}, "steps"),
    ],
)
def test_robust_accuracy_bad_arguments(kwargs: dict, argument: str, digits, digits_cnn) -> None:
    with pytest.raises(ValueError, match=argument):
        attacks.robust_accuracy(digits_cnn, digits.x_test[:5], digits.y_test[:5], **kwargs)


def test_perturbation_norm_bad_arguments(digits) -> None:
    x = digits.x_test[:3]
    with pytest.raises(ValueError, match="norm"):
        attacks.perturbation_norm(x, x, norm="l1")
    with pytest.raises(ValueError, match="same shape"):
        attacks.perturbation_norm(x, x[:2])


def test_targeted_attacks_try_the_runners_up_best_first() -> None:
    from gdsec.attacks._core import TOP_TARGETS, runner_up_targets, target_count

    logits = torch.tensor([[0.1, 3.0, 2.0, -1.0], [5.0, 0.0, 1.0, 2.0]])
    assert [t.tolist() for t in runner_up_targets(logits)] == [[2, 3], [0, 2], [3, 1]]
    assert target_count(2) == 1 and target_count(100) == TOP_TARGETS == 9
    assert len(runner_up_targets(torch.randn(3, 20))) == 9
