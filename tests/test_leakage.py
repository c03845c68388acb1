"""Unit tests for gdsec.leakage (DLG, iDLG label inference, defences) and its explorer."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from gdsec import data, leakage, models
from gdsec.widgets.leakage import leakage_explorer, plot_reconstruction


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
    target = [
        2.5 * g for g in leakage.client_gradients(victim, x, y)
    ]  # a rescaled gradient, as clipping makes
    x_rec, y_rec = leakage.dlg(
        victim, target, (1, 1, 8, 8), n_classes=10, labels=y, distance="cosine"
    )
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
        target = leakage.client_gradients(
            victim, digits.x_test[i : i + 1], digits.y_test[i : i + 1]
        )
        assert leakage.infer_labels(target, n_classes=10).item() == digits.y_test[i].item()


def test_infer_labels_without_a_bias_uses_weight_rows(digits):
    model = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(64, 16),
        torch.nn.Sigmoid(),
        torch.nn.Linear(16, 10, bias=False),
    )
    x, y = digits.x_test[:1], digits.y_test[:1]
    assert (
        leakage.infer_labels(leakage.client_gradients(model, x, y), n_classes=10).item() == y.item()
    )


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
        leakage.dlg(
            victim, [torch.full_like(target[0], math.nan), *target[1:]], (1, 1, 8, 8), n_classes=10
        )
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


def test_global_pruning_ranks_entries_across_tensors():
    grads = [torch.tensor([1.0, -2.0, 3.0]), torch.tensor([10.0, -20.0])]
    saved = [g.clone() for g in grads]
    pruned = leakage.prune_gradients(grads, 0.4, scope="global")
    assert torch.equal(pruned[0], torch.tensor([0.0, 0.0, 3.0])) and torch.equal(
        pruned[1], grads[1]
    )
    per_tensor = leakage.prune_gradients(grads, 0.4)
    assert torch.equal(per_tensor[0], torch.tensor([0.0, -2.0, 3.0])) and torch.equal(
        per_tensor[1], torch.tensor([0.0, -20.0])
    )
    assert leakage.prune_gradients(grads, 0.0, scope="global")[0].equal(grads[0])
    assert all(torch.equal(a, b) for a, b in zip(grads, saved, strict=True))
    with pytest.raises(ValueError, match="scope"):
        leakage.prune_gradients(grads, 0.5, scope="layer")


@pytest.mark.integration
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
            module=work,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=0.0,
            max_grad_norm=0.05,
            poisson_sampling=False,
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


@pytest.mark.integration
def test_dp_epsilon_falls_with_noise():
    eps = [leakage.dp_epsilon(s, sample_rate=0.05, steps=100) for s in (0.5, 1.0, 2.0)]
    assert eps[0] > eps[1] > eps[2] > 0
    assert leakage.dp_epsilon(0.0, sample_rate=0.05, steps=100) == math.inf
    with pytest.raises(ValueError, match="sample_rate"):
        leakage.dp_epsilon(1.0, sample_rate=0.0, steps=10)
    with pytest.raises(ValueError, match="delta"):
        leakage.dp_epsilon(1.0, sample_rate=0.1, steps=10, delta=1.0)


def test_one_unamplified_release_costs_what_the_gaussian_mechanism_costs():
    # One release (sample_rate=1, steps=1): RDP of order a is a / (2 sigma^2); Opacus converts it to
    # eps = min_a [a / (2 sigma^2) + log((a - 1) / a) - (log(delta) + log(a)) / (a - 1)] over its orders.
    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
    for sigma in (0.1, 1.0, 4.0):
        closed = min(
            a / (2 * sigma**2) + math.log((a - 1) / a) - (math.log(1e-5) + math.log(a)) / (a - 1)
            for a in orders
        )
        assert math.isclose(
            leakage.dp_epsilon(sigma, sample_rate=1.0, steps=1), closed, rel_tol=1e-6
        )
    # Subsampling amplifies only with enough noise: at sigma = 4, 176 secret steps at q = 1/22 cost less
    # than one release the attacker knows about; at sigma = 0.1 the composition costs far more.
    assert leakage.dp_epsilon(4.0, sample_rate=1 / 22, steps=176) < 0.8 * leakage.dp_epsilon(
        4.0, sample_rate=1.0, steps=1
    )
    assert leakage.dp_epsilon(0.1, sample_rate=1 / 22, steps=176) > 10 * leakage.dp_epsilon(
        0.1, sample_rate=1.0, steps=1
    )


@pytest.mark.integration
def test_dp_train_reports_epsilon_silently_and_leaves_no_hooks(digits):
    model = models.mlp(activation="sigmoid", hidden=16, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = leakage.dp_train(
            model,
            digits.x_train[:256],
            digits.y_train[:256],
            noise_multiplier=1.0,
            epochs=1,
            batch_size=32,
        )
    assert not [w for w in caught if "opacus" in str(w.filename) or "hook" in str(w.message)]
    assert 0 < result.epsilon < math.inf and result.steps >= 1
    assert math.isclose(
        result.epsilon, leakage.dp_epsilon(1.0, sample_rate=result.sample_rate, steps=result.steps)
    )
    assert any(not torch.equal(a, b) for a, b in zip(model.parameters(), before, strict=True))
    assert not model.training
    assert all(not hasattr(p, "grad_sample") or p.grad_sample is None for p in model.parameters())
    assert not model._forward_hooks and all(not m._forward_hooks for m in model.modules())
    with pytest.raises(ValueError, match="batch_size"):
        leakage.dp_train(
            model, digits.x_train[:10], digits.y_train[:10], noise_multiplier=1.0, batch_size=20
        )


def test_psnr_by_hand():
    x = torch.zeros(2, 1, 2, 2)
    x_rec = x.clone()
    x_rec[0, 0, 0, 0] = 0.2  # MSE 0.04 / 4 = 0.01 -> 10 log10(1 / 0.01) = 20 dB
    values = leakage.psnr(x_rec, x)
    assert math.isclose(values[0].item(), 20.0, rel_tol=1e-6) and values[1].item() == math.inf
    assert math.isclose(
        leakage.psnr(x_rec, x, data_range=2.0)[0].item(), 20.0 + 20 * math.log10(2), rel_tol=1e-6
    )
    assert leakage.psnr(x_rec.flatten(1), x.flatten(1))[0].item() == pytest.approx(20.0)
    with pytest.raises(ValueError, match="x_rec"):
        leakage.psnr(x_rec[:1], x)
    with pytest.raises(ValueError, match="data_range"):
        leakage.psnr(x_rec, x, data_range=0.0)
    with pytest.raises(ValueError, match="x"):
        leakage.psnr(x_rec, torch.full_like(x, math.nan))


def test_ssim_by_hand_on_one_window():
    # x = [[0, 0], [1, 1]], y = [[0, 0], [1, 0]], one 2x2 window, sample (n - 1 = 3) statistics:
    # mu_x = 1/2, mu_y = 1/4, var_x = 1/3, var_y = 1/4, cov = 1/6, c1 = 1e-4, c2 = 9e-4, so
    # SSIM = (2 * 1/8 + c1)(2/6 + c2) / ((1/4 + 1/16 + c1)(1/3 + 1/4 + c2)) = 0.25010 * 0.33423 / (0.31260 * 0.58423).
    x = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])
    y = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])
    assert leakage.ssim(y, x, window=2).item() == pytest.approx(0.45771, abs=1e-5)
    assert leakage.ssim(x, y, window=2).item() == pytest.approx(0.45771, abs=1e-5)
    assert leakage.ssim(x, x, window=2).item() == pytest.approx(1.0)
    assert leakage.ssim(1 - x, x, window=2).item() < 0  # inverted contrast: negative correlation
    # The same pair at a tenth of the contrast, where the constants matter: every statistic but the
    # means scales by 1/100, so SSIM = (2 * 1/800 + c1)(2/600 + c2) / ((1/400 + 1/1600 + c1)(1/300 + 1/400 + c2))
    # = 0.0026 * 0.0042333 / (0.003225 * 0.0067333) = 0.50687 (population variances would give 0.51964).
    assert leakage.ssim(y / 10, x / 10, window=2).item() == pytest.approx(0.50687, abs=1e-4)


def test_ssim_averages_every_window_position_and_channel():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 2, 8, 8, generator=g), torch.rand(2, 2, 8, 8, generator=g)
    by_window = [
        leakage.ssim(
            a[n : n + 1, c, i : i + 3, j : j + 3], b[n : n + 1, c, i : i + 3, j : j + 3], window=3
        )
        for n in range(2)
        for c in range(2)
        for i in range(6)
        for j in range(6)
    ]
    expected = torch.cat(by_window).reshape(2, 72).mean(1)
    assert torch.allclose(leakage.ssim(a, b, window=3), expected, atol=1e-12)
    assert leakage.ssim(a, b).shape == (2,)  # default window 7 fits an 8x8 image
    for window in (1, 9):
        with pytest.raises(ValueError, match="window"):
            leakage.ssim(a, b, window=window)
    with pytest.raises(ValueError, match="images"):
        leakage.ssim(a.flatten(1), b.flatten(1))


def test_reconstruction_quality_matches_before_scoring(digits):
    x = digits.x_test[:3]
    noisy = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(
        0, 1
    )
    shuffled = leakage.reconstruction_quality(noisy[[2, 0, 1]], x)
    aligned = leakage.reconstruction_quality(noisy, x)
    assert all(torch.allclose(a, b) for a, b in zip(shuffled, aligned, strict=True))
    assert torch.allclose(aligned.psnr, 10 * torch.log10(1 / aligned.mse))
    assert (aligned.ssim < 1).all() and (aligned.ssim > 0.5).all() and (aligned.psnr > 20).all()
    unmatched = leakage.reconstruction_quality(noisy[[2, 0, 1]], x, match=False)
    assert (unmatched.psnr < aligned.psnr - 5).all() and torch.allclose(
        unmatched.psnr, leakage.psnr(noisy[[2, 0, 1]], x)
    )
    with pytest.raises(ValueError, match="match"):
        leakage.reconstruction_quality(noisy, x, match="yes")
    blank = leakage.reconstruction_quality(torch.zeros_like(x), x)
    assert (blank.ssim < 0.1).all() and (blank.psnr < aligned.psnr - 10).all()


def test_client_gradients_validate_and_restore_mode(digits, victim):
    victim.train()
    grads = leakage.client_gradients(victim, digits.x_test[:2], digits.y_test[:2])
    assert len(grads) == len(list(victim.parameters())) and victim.training
    with pytest.raises(ValueError, match="x"):
        leakage.client_gradients(victim, digits.x_test[:2] * 3, digits.y_test[:2])
    with pytest.raises(ValueError, match="y"):
        leakage.client_gradients(victim, digits.x_test[:2], digits.y_test[:3])


@pytest.mark.integration
def test_leakage_explorer_precomputes_views(digits, victim):
    x, y = _distinct(digits, 2)
    box = leakage_explorer(
        victim, x, y, noise_levels=(0.0, 0.1), batch_sizes=(1, 2), steps=3, live=False
    )
    stacks = [w for w in box.children if w.__class__.__name__ == "Stack"]
    assert len(stacks) == 1 and len(stacks[0].children) == 2
    with pytest.raises(ValueError, match="batch_sizes"):
        leakage_explorer(victim, x, y, batch_sizes=(3,), live=False)
    with pytest.raises(ValueError, match="noise_levels"):
        leakage_explorer(victim, x, y, noise_levels=(-1.0,), live=False)


def test_plot_reconstruction_captions_psnr(digits):
    import matplotlib.pyplot as plt

    x = digits.x_test[:2]
    fig = plot_reconstruction(x, x, torch.tensor([0.01, 0.001]), columns=3)
    captions = [ax.get_title() for ax in fig.axes if ax.get_title()]
    plt.close(fig)
    assert captions == ["20 dB", "30 dB"]


def test_public_names_live_in_one_submodule_each_and_import_from_the_package():
    from gdsec.leakage import defences, gradients, metrics, reconstruction

    modules = (defences, gradients, metrics, reconstruction)
    homes = {name: [m for m in modules if name in m.__all__] for name in leakage.__all__}
    assert all(
        len(found) == 1 and getattr(leakage, name) is getattr(found[0], name)
        for name, found in homes.items()
    )
    assert (
        "max_norm" in leakage.DPTraining._fields
        and "max_grad_norm" not in leakage.DPTraining._fields
    )
