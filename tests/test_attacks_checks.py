"""gdsec.attacks.checks: one owner for each robustness check and adaptive-attack block."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gdsec import masking
from gdsec.attacks import (
    MeanOfDraws,
    StraightThrough,
    is_randomised,
    looks_like_probabilities,
    straight_through,
    zero_gradient_rows,
)
from gdsec.attacks.checks import (
    flat_output,
    gradient_inconsistency,
    logit_scale,
)
from gdsec.attacks.continuity import (
    JUMP_TOL,
    STEEP_TOL,
    boundary_jump,
    boundary_steepness,
    consistency_flags,
)
from gdsec.models import mlp
from gdsec.streams import seeded_global_rng


class LogitNoise(nn.Module):
    """An MLP whose logits get Gaussian noise of standard deviation ``scale`` (torch's global generator)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.net, self.scale = mlp(n_features=4, n_classes=3, seed=0), scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out + self.scale * torch.randn_like(out)


def _x() -> torch.Tensor:
    return torch.linspace(0, 1, 40).reshape(10, 4)


def test_tiny_logit_noise_is_randomised_and_a_deterministic_model_is_not() -> None:
    with seeded_global_rng(0, "tests.attacks_checks"):
        assert is_randomised(LogitNoise(1e-6), _x())
        assert not is_randomised(LogitNoise(0.0), _x())
        assert not is_randomised(LogitNoise(1e-6), _x(), tol=1e-3), (
            "a tolerance above the noise says deterministic"
        )


def test_dropout_left_in_training_mode_is_randomised_in_that_mode() -> None:
    with seeded_global_rng(0, "tests.attacks_checks"):
        model = nn.Sequential(nn.Linear(4, 32), nn.Dropout(0.5), nn.Linear(32, 3)).train()
    with seeded_global_rng(1, "tests.attacks_checks"):
        assert is_randomised(model, _x())
    assert model.training, "the check does not switch the model's mode"
    assert not is_randomised(model.eval(), _x())


def test_zero_gradient_rows_and_probabilities() -> None:
    net = mlp(n_features=4, n_classes=3, seed=0)
    x, y = _x(), torch.arange(10) % 3
    assert not zero_gradient_rows(net, x, y).any()
    quantized = nn.Sequential(masking.Quantize(levels=4), net)
    assert zero_gradient_rows(quantized, x, y).all()
    assert zero_gradient_rows(net, x, y, atol=1e9).all()
    assert looks_like_probabilities(nn.Sequential(net, nn.Softmax(dim=1)), x)
    assert not looks_like_probabilities(net, x)
    with pytest.raises(ValueError, match="atol"):
        zero_gradient_rows(net, x, y, atol=-1.0)
    with pytest.raises(ValueError, match="tol"):
        is_randomised(net, x, tol=-1.0)


def test_mean_of_draws_averages_and_straight_through_passes_the_gradient() -> None:
    with seeded_global_rng(0, "tests.attacks_checks"):
        mean = MeanOfDraws(LogitNoise(1.0), 400)(_x())
    assert (mean - LogitNoise(0.0)(_x())).abs().max() < 0.3
    with pytest.raises(ValueError, match="draws"):
        MeanOfDraws(LogitNoise(1.0), 0)
    x = torch.rand(5, 3, requires_grad=True)
    out = StraightThrough(masking.Quantize(levels=2))(x)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(out, masking.Quantize(levels=2)(x)) and torch.equal(grad, torch.ones_like(x))
    model = nn.Sequential(masking.Quantize(levels=2), nn.Linear(3, 2))
    stand_in = straight_through(model, [0])
    assert isinstance(stand_in[0], StraightThrough) and stand_in[1] is model[1]
    with pytest.raises(ValueError, match="layers"):
        straight_through(model, [2])
    with pytest.raises(ValueError, match="Sequential"):
        straight_through(nn.Linear(3, 2), [0])  # type: ignore[arg-type]


class _Times(nn.Module):
    """``model``'s logits times ``k``, optionally as float64."""

    def __init__(self, model: nn.Module, k: float, double: bool = False) -> None:
        super().__init__()
        self.model, self.k, self.double_logits = model, k, double

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(x) * self.k
        return z.double() if self.double_logits else z


def _digits_like(n: int = 30) -> torch.Tensor:
    """Seeded 8x8 inputs in [0, 1], a third of the pixels exactly 0 (as on the digits)."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(n, 1, 8, 8, generator=g)
    return x * (torch.rand(n, 1, 8, 8, generator=g) > 0.3)


@pytest.mark.parametrize("classes", [2, 10])
def test_gradient_inconsistency_is_near_zero_honest_and_one_on_a_decoy(classes: int) -> None:
    honest = mlp(64, classes, hidden=16, seed=0).eval()
    decoy = masking.DecoyGradient(honest, [mlp(64, classes, hidden=16, seed=5)]).eval()
    x = _digits_like()
    plain = gradient_inconsistency(honest, x)
    assert plain.shape == (30,) and plain.median() < 0.01, plain.median()
    assert gradient_inconsistency(decoy, x).median() > 0.9
    for variant in (_Times(honest, 1000.0), _Times(honest, 1.0, double=True)):
        assert gradient_inconsistency(variant, x).median() < 0.01


def test_flat_output_spread_is_scale_free_and_zero_on_a_decoy() -> None:
    honest = mlp(64, 10, hidden=16, seed=0).eval()
    decoy = masking.DecoyGradient(honest, [mlp(64, 10, hidden=16, seed=5)]).eval()
    x = _digits_like()
    spread = flat_output(honest, x, 0.1)
    assert spread.shape == (30,) and spread.median() > 1e-2, spread.median()
    assert torch.allclose(flat_output(_Times(honest, 1000.0), x, 0.1), spread, rtol=1e-3, atol=1e-5)
    assert flat_output(decoy, x, 0.1).median() == 0.0


def test_consistency_flags_name_the_decoy_and_spare_the_honest_model() -> None:
    honest = mlp(64, 10, hidden=16, seed=0).eval()
    decoy = masking.DecoyGradient(honest, [mlp(64, 10, hidden=16, seed=5)]).eval()
    x = _digits_like()
    names = [flag.split(":")[0] for flag in consistency_flags(decoy, x, 0.1)]
    assert names == ["inconsistent-gradient", "flat-output", "discontinuous-scores"]
    assert (
        consistency_flags(honest, x, 0.1) == []
        and consistency_flags(_Times(honest, 1e3), x, 0.1) == []
    )
    assert consistency_flags(decoy, x, 0.0)[0].startswith("inconsistent")  # no ball, no spread


class Jumping(nn.Module):
    """``scale * onehot(argmax model(x)) + weight * smooth(x)``: model's decisions, smooth's real
    gradient (autograd agrees with finite differences, the margin moves), scores that jump."""

    def __init__(self, model: nn.Module, smooth: nn.Module, weight: float = 0.1) -> None:
        super().__init__()
        self.model, self.smooth, self.weight = model, smooth, weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(x)
        onehot = nn.functional.one_hot(z.argmax(1), z.shape[1]).to(z.dtype)
        return 5.0 * onehot + self.weight * self.smooth(x)


@pytest.mark.parametrize("classes", [2, 10])
def test_boundary_jump_is_zero_on_continuous_scores_and_large_where_they_jump(classes) -> None:
    honest = mlp(64, classes, hidden=16, seed=0).eval()
    x = _digits_like()
    plain = boundary_jump(honest, x)
    assert plain.shape == (30,) and (~plain.isnan()).sum() >= 10
    assert plain.nanmedian() < JUMP_TOL / 100, plain.nanmedian()
    for variant in (_Times(honest, 1000.0), _Times(honest, 1.0, double=True)):
        assert boundary_jump(variant, x).nanmedian() < JUMP_TOL / 100
    for smooth in (mlp(64, classes, hidden=16, seed=5), _Times(honest, -1.0)):
        jumps = boundary_jump(Jumping(honest, smooth).eval(), x)
        assert jumps.nanmedian() > 0.1, jumps.nanmedian()


def test_a_smooth_decoy_with_jumping_decisions_is_flagged_only_as_discontinuous() -> None:
    honest = mlp(64, 10, hidden=16, seed=0).eval()
    x = _digits_like()
    jumping = Jumping(honest, mlp(64, 10, hidden=16, seed=5), weight=2.0).eval()
    names = [flag.split(":")[0] for flag in consistency_flags(jumping, x, 0.1)]
    assert names == ["discontinuous-scores"]


class _ProbeAware(nn.Module):
    """``model`` on the segments between two ``trusted`` rows (the unjittered probes), ``other`` elsewhere."""

    def __init__(self, model: nn.Module, other: nn.Module, trusted: torch.Tensor) -> None:
        super().__init__()
        self.model, self.other, self.trusted = model, other, trusted.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.flatten(1)[:, None, None, :] - self.trusted[None, :, None, :]  # (n, N, 1, D)
        seg = self.trusted[None, None] - self.trusted[None, :, None]  # (1, N, N, D)
        t = (seg * u).sum(3) / seg.pow(2).sum(3).clamp_min(1e-12)
        off = (u - t[..., None] * seg).abs().amax(3)
        on = ((off < 1e-4) & (t >= 0) & (t <= 1)).flatten(1).any(1, keepdim=True)
        return torch.where(on, self.model(x), self.other(x))


def test_boundary_jump_jittered_probes_see_what_an_attack_sees() -> None:
    honest = mlp(64, 10, hidden=16, seed=0).eval()
    x = _digits_like(10)
    aware = _ProbeAware(honest, Jumping(honest, _Times(honest, -1.0)), x).eval()
    assert boundary_jump(aware, x).nanmedian() < JUMP_TOL / 100  # it recognises the segments
    assert boundary_jump(aware, x, jitter=0.1).nanmedian() > 0.1
    assert "discontinuous-scores" in [f.split(":")[0] for f in consistency_flags(aware, x, 0.1)]
    assert boundary_jump(honest, x, jitter=0.1).nanmedian() < JUMP_TOL / 100


class _Steep(nn.Module):
    """``5 * softmax(model / T) - 0.1 * model``: continuous, saturating, rising in a narrow band."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(x)
        return 5.0 * torch.softmax(z / self.temperature, 1) - 0.1 * z


def test_boundary_steepness_is_about_one_honest_and_large_in_a_narrow_band() -> None:
    honest = mlp(64, 10, hidden=16, seed=0).eval()
    x = _digits_like()
    for model in (honest, _Times(honest, 1000.0), _Times(honest, 1.0, double=True)):
        assert boundary_steepness(model, x, jitter=0.1).nanmedian() < STEEP_TOL / 3
    steep = _Steep(honest, 1e-4).eval()  # the untrained logits span about 0.6
    assert boundary_jump(steep, x, jitter=0.1).nanmedian() < JUMP_TOL  # continuous: no jump
    assert boundary_steepness(steep, x, jitter=0.1).nanmedian() > 3 * STEEP_TOL
    assert "discontinuous-scores" in [f.split(":")[0] for f in consistency_flags(steep, x, 0.1)]


def test_boundary_jump_without_a_partner_is_nan() -> None:
    one_class = _Times(mlp(64, 3, hidden=4, seed=0), 0.0)  # every row predicts class 0
    assert boundary_jump(one_class, _digits_like(5)).isnan().all()
    assert boundary_jump(mlp(64, 3, hidden=4, seed=0), _digits_like(1)).isnan().all()


def test_logit_scale_is_one_positive_number_per_batch() -> None:
    z = torch.tensor([[1.0, -1.0], [3.0, -3.0], [0.0, 0.0]])
    assert logit_scale(z).item() == pytest.approx(2**0.5 * 1.0)
    assert logit_scale(torch.zeros(2, 3)).item() > 0


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda m, x: gradient_inconsistency(m, x, directions=0), "directions"),
        (lambda m, x: gradient_inconsistency(m, x, h=0.0), "h"),
        (lambda m, x: gradient_inconsistency(m, x * 2), "x"),
        (lambda m, x: flat_output(m, x, -0.1), "eps"),
        (lambda m, x: flat_output(m, x, 0.1, points=1), "points"),
        (lambda m, x: flat_output("model", x, 0.1), "model"),
        (lambda m, x: boundary_jump(m, x, steps=0), "steps"),
        (lambda m, x: boundary_jump(m, x, jitter=-0.1), "jitter"),
        (lambda m, x: boundary_steepness(m, x, steps=0), "steps"),
        (lambda m, x: boundary_jump(m, x * 2), "x"),
        (lambda m, x: boundary_jump("model", x), "model"),
    ],
)
def test_consistency_checks_validate(call, name) -> None:
    with pytest.raises(ValueError, match=name):
        call(mlp(64, 3, hidden=4, seed=0), _digits_like(4) + 0.0)
