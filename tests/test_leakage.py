"""Unit tests for gdsec.leakage (DLG, iDLG label inference, defences) and its explorer."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from gdsec import data, leakage, models
from gdsec.widgets.leakage import leakage_explorer


@pytest.fixture()
def victim() -> torch.nn.Module:
    return models.mlp(activation="sigmoid", hidden=32, seed=0)


def _distinct(split: data.Split, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    index = [int((split.y_test == c).nonzero()[0]) for c in range(n)]
    return split.x_test[index], split.y_test[index]


def test_dlg_recovers_a_single_digit_and_its_label(digits, victim):
    x, y = digits.x_test[:1], digits.y_test[:1]
    target = leakage.client_gradients(victim, x, y)
    x_rec, y_rec = leakage.dlg(victim, target, (1, 1, 8, 8), n_classes=10)
    assert x_rec.shape == x.shape and x_rec.dtype == torch.float32
    assert 0 <= x_rec.min() and x_rec.max() <= 1
    assert torch.equal(y_rec, y)
    assert leakage.reconstruction_errors(x_rec, x).item() < 1e-4


def test_dlg_recovers_a_batch_of_two_distinct_labels(digits, victim):
    x, y = _distinct(digits, 2)
    target = leakage.client_gradients(victim, x, y)
    x_rec, y_rec = leakage.dlg(victim, target, tuple(x.shape), n_classes=10)
    assert torch.equal(y_rec, y.sort().values)
    assert leakage.reconstruction_errors(x_rec, x).max().item() < 1e-3


def test_dlg_leaves_inputs_and_model_untouched(digits, victim):
    x, y = digits.x_test[:2], digits.y_test[:2]
    target = leakage.client_gradients(victim, x, y)
    saved_target = [g.clone() for g in target]
    saved_params = [p.detach().clone() for p in victim.parameters()]
    victim.train()
    leakage.dlg(victim, target, (2, 1, 8, 8), n_classes=10, steps=5)
    assert all(torch.equal(a, b) for a, b in zip(target, saved_target, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(victim.parameters(), saved_params, strict=True))
    assert all(p.grad is None for p in victim.parameters())
    assert victim.training


def test_dlg_is_deterministic_given_the_seed(digits, victim):
    target = leakage.client_gradients(victim, digits.x_test[3:4], digits.y_test[3:4])
    first = leakage.dlg(victim, target, (1, 1, 8, 8), n_classes=10, steps=3, seed=5)[0]
    again = leakage.dlg(victim, target, (1, 1, 8, 8), n_classes=10, steps=3, seed=5)[0]
    other = leakage.dlg(victim, target, (1, 1, 8, 8), n_classes=10, steps=3, seed=6)[0]
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_dlg_uses_given_labels_and_cosine_distance(digits, victim):
    x, y = digits.x_test[:1], digits.y_test[:1]
    target = [2.5 * g for g in leakage.client_gradients(victim, x, y)]  # a rescaled gradient, as clipping makes
    x_rec, y_rec = leakage.dlg(victim, target, (1, 1, 8, 8), n_classes=10, labels=y, distance="cosine")
    assert torch.equal(y_rec, y)
    assert leakage.reconstruction_errors(x_rec, x).item() < 1e-3


def test_dlg_works_on_tabular_inputs():
    model = models.mlp(n_features=5, n_classes=3, hidden=16, activation="tanh", seed=1)
    x, y = torch.rand(1, 5, generator=torch.Generator().manual_seed(0)), torch.tensor([2])
    x_rec, y_rec = leakage.dlg(model, leakage.client_gradients(model, x, y), (1, 5), n_classes=3)
    assert y_rec.item() == 2
    assert (x_rec - x).abs().max() < 1e-2


def test_infer_labels_is_exact_for_single_examples(digits, victim):
    for i in range(40):
        target = leakage.client_gradients(victim, digits.x_test[i : i + 1], digits.y_test[i : i + 1])
        assert leakage.infer_labels(target, n_classes=10).item() == digits.y_test[i].item()


def test_infer_labels_without_a_bias_uses_weight_rows(digits):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.Sigmoid(), torch.nn.Linear(16, 10, bias=False))
    x, y = digits.x_test[:1], digits.y_test[:1]
    assert leakage.infer_labels(leakage.client_gradients(model, x, y), n_classes=10).item() == y.item()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_classes": 1}, "n_classes"),
        ({"n_classes": 10, "steps": 0}, "steps"),
        ({"n_classes": 10, "lr": 0.0}, "lr"),
        ({"n_classes": 10, "lr": float("nan")}, "lr"),
        ({"n_classes": 10, "seed": -1}, "seed"),
        ({"n_classes": 10, "distance": "l1"}, "distance"),
        ({"n_classes": 10, "labels": torch.tensor([1, 2])}, "labels"),
        ({"n_classes": 10, "labels": torch.tensor([10])}, "labels"),
    ],
)
def test_dlg_rejects_bad_arguments(digits, victim, kwargs, match):
    target = leakage.client_gradients(victim, digits.x_test[:1], digits.y_test[:1])
    with pytest.raises(ValueError, match=match):
        leakage.dlg(victim, target, (1, 1, 8, 8), **kwargs)


def test_dlg_rejects_bad_gradients_and_shapes(digits, victim):
    target = leakage.client_gradients(victim, digits.x_test[:1], digits.y_test[:1])
    with pytest.raises(ValueError, match="target_grads"):
        leakage.dlg(victim, target[:-1], (1, 1, 8, 8), n_classes=10)
    with pytest.raises(ValueError, match="target_grads"):
        leakage.dlg(victim, [target[0].T, *target[1:]], (1, 1, 8, 8), n_classes=10)
    with pytest.raises(ValueError, match="target_grads"):
        leakage.dlg(victim, [torch.full_like(target[0], math.nan), *target[1:]], (1, 1, 8, 8), n_classes=10)
    with pytest.raises(ValueError, match="target_grads"):
        leakage.dlg(victim, "gradients", (1, 1, 8, 8), n_classes=10)
    with pytest.raises(ValueError, match="x_shape"):
        leakage.dlg(victim, target, (64,), n_classes=10)
    with pytest.raises(ValueError, match="x_shape"):
        leakage.dlg(victim, target, (0, 64), n_classes=10)
    with pytest.raises(ValueError, match="model"):
        leakage.dlg("model", target, (1, 64), n_classes=10)


def test_reconstruction_errors_ignore_order(digits):
    x = digits.x_test[:3]
    errors = leakage.reconstruction_errors(x[[2, 0, 1]], x)
    assert errors.shape == (3,) and errors.max().item() == 0
    assert torch.equal(leakage.match_reconstructions(x[[2, 0, 1]], x), x)
    with pytest.raises(ValueError, match="x_rec"):
        leakage.reconstruction_errors(x[:2], x)


def test_noise_and_pruning_copy_and_validate():
    grads = [torch.arange(10.0).reshape(2, 5), torch.tensor([-3.0, 0.5])]
    saved = [g.clone() for g in grads]
    same = leakage.add_gradient_noise(grads, 0.0)
    noisy = leakage.add_gradient_noise(grads, 0.5, seed=1)
    pruned = leakage.prune_gradients(grads, 0.5)
    assert all(torch.equal(a, b) for a, b in zip(same, grads, strict=True))
    assert not torch.equal(noisy[0], grads[0])
    assert torch.equal(noisy[0], leakage.add_gradient_noise(grads, 0.5, seed=1)[0])
    assert (pruned[0] == 0).sum().item() == 5 and torch.equal(pruned[0][1], grads[0][1])
    assert torch.equal(pruned[1], torch.tensor([-3.0, 0.0]))
    assert all(torch.equal(a, b) for a, b in zip(grads, saved, strict=True))
    with pytest.raises(ValueError, match="sigma"):
        leakage.add_gradient_noise(grads, -1.0)
    with pytest.raises(ValueError, match="fraction"):
        leakage.prune_gradients(grads, 1.5)


def test_dp_gradients_match_opacus_clipping(digits, victim):
    from opacus import PrivacyEngine

    x, y = digits.x_test[:4], digits.y_test[:4]
    ours = leakage.dp_gradients(victim, x, y, max_norm=0.05, noise_multiplier=0.0)
    work = models.mlp(activation="sigmoid", hidden=32, seed=0)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    optimizer = torch.optim.SGD(work.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        private, dp_optimizer, _ = PrivacyEngine(accountant="rdp").make_private(
            module=work, optimizer=optimizer, data_loader=loader, noise_multiplier=0.0,
            max_grad_norm=0.05, poisson_sampling=False,
        )
        torch.nn.functional.cross_entropy(private(x), y).backward()
        dp_optimizer.pre_step()
    for a, p in zip(ours, work.parameters(), strict=True):
        assert torch.allclose(a, p.grad, atol=1e-6)
    plain = leakage.dp_gradients(victim, x, y, max_norm=1e6, noise_multiplier=0.0)
    exact = leakage.client_gradients(victim, x, y)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, exact, strict=True))
    with pytest.raises(ValueError, match="max_norm"):
        leakage.dp_gradients(victim, x, y, max_norm=0.0, noise_multiplier=1.0)
    with pytest.raises(ValueError, match="noise_multiplier"):
        leakage.dp_gradients(victim, x, y, noise_multiplier=-1.0)


def test_dp_epsilon_falls_with_noise():
    eps = [leakage.dp_epsilon(s, sample_rate=0.05, steps=100) for s in (0.5, 1.0, 2.0)]
    assert eps[0] > eps[1] > eps[2] > 0
    assert leakage.dp_epsilon(0.0, sample_rate=0.05, steps=100) == math.inf
    with pytest.raises(ValueError, match="sample_rate"):
        leakage.dp_epsilon(1.0, sample_rate=0.0, steps=10)
    with pytest.raises(ValueError, match="delta"):
        leakage.dp_epsilon(1.0, sample_rate=0.1, steps=10, delta=1.0)


def test_dp_train_reports_epsilon_silently_and_leaves_no_hooks(digits):
    model = models.mlp(activation="sigmoid", hidden=16, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = leakage.dp_train(model, digits.x_train[:256], digits.y_train[:256], noise_multiplier=1.0, epochs=1, batch_size=32)
    assert not [w for w in caught if "opacus" in str(w.filename) or "hook" in str(w.message)]
    assert 0 < result.epsilon < math.inf and result.steps >= 1
    assert math.isclose(result.epsilon, leakage.dp_epsilon(1.0, sample_rate=result.sample_rate, steps=result.steps))
    assert any(not torch.equal(a, b) for a, b in zip(model.parameters(), before, strict=True))
    assert not model.training
    assert all(not hasattr(p, "grad_sample") or p.grad_sample is None for p in model.parameters())
    assert not model._forward_hooks and all(not m._forward_hooks for m in model.modules())
    with pytest.raises(ValueError, match="batch_size"):
        leakage.dp_train(model, digits.x_train[:10], digits.y_train[:10], noise_multiplier=1.0, batch_size=20)


def test_client_gradients_validate_and_restore_mode(digits, victim):
    victim.train()
    grads = leakage.client_gradients(victim, digits.x_test[:2], digits.y_test[:2])
    assert len(grads) == len(list(victim.parameters())) and victim.training
    with pytest.raises(ValueError, match="x"):
        leakage.client_gradients(victim, digits.x_test[:2] * 3, digits.y_test[:2])
    with pytest.raises(ValueError, match="y"):
        leakage.client_gradients(victim, digits.x_test[:2], digits.y_test[:3])


def test_leakage_explorer_precomputes_views(digits, victim):
    x, y = _distinct(digits, 2)
    box = leakage_explorer(victim, x, y, noise_levels=(0.0, 0.1), batch_sizes=(1, 2), steps=3, live=False)
    stacks = [w for w in box.children if w.__class__.__name__ == "Stack"]
    assert len(stacks) == 1 and len(stacks[0].children) == 2
    with pytest.raises(ValueError, match="batch_sizes"):
        leakage_explorer(victim, x, y, batch_sizes=(3,), live=False)
    with pytest.raises(ValueError, match="noise_levels"):
        leakage_explorer(victim, x, y, noise_levels=(-1.0,), live=False)


def test_public_names_live_in_one_submodule_each_and_import_from_the_package():
    from gdsec.leakage import defences, gradients, reconstruction

    homes = {name: [m for m in (defences, gradients, reconstruction) if name in m.__all__] for name in leakage.__all__}
    assert all(len(found) == 1 and getattr(leakage, name) is getattr(found[0], name) for name, found in homes.items())
    assert "max_norm" in leakage.DPTraining._fields and "max_grad_norm" not in leakage.DPTraining._fields
