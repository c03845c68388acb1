"""BPDA stand-ins of any model the audit loads (gdsec.attacks.graphs and .stand_in) and the distilled
surrogate of gdsec.audit.adaptive: the step that blocks the gradient is found in an nn.Module tree, a
torch.fx graph (torch.export) and TorchScript, the forward pass is kept, and the model is never
modified."""

from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
from torch import nn

from gdsec import attacks, masking, models
from gdsec.attacks import bpda_stand_in, straight_through_graph, straight_through_modules
from gdsec.audit import adaptive
from gdsec.audit.wrapping import PixelModel  # gdsec-audit's wrapper around a saved model

ROWS = torch.linspace(0.0, 1.0, 8 * 64).reshape(8, 1, 8, 8)


class _Rounded(nn.Module):
    """Rounding inside ``forward`` (no layer to swap), then ``inner``."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 2) / 2)


class _Nested(nn.Module):
    """A 3-level quantiser nested inside a submodule, not a top-level Sequential."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.pre = nn.Sequential(masking.Quantize(3))
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(self.pre(x))


class _Binarised(nn.Module):
    """A comparison and a cast: the gradient is None, not zero."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner((x > 0.5).to(x.dtype))


class _Noisy(nn.Module):
    """Noise from torch's generator, then rounding."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round((x + 0.1 * torch.rand_like(x)).clamp(0, 1) * 2) / 2)


def _mlp() -> nn.Module:
    return models.mlp(seed=0).eval()


def _exported(model: nn.Module) -> torch.fx.GraphModule:
    """``model`` through torch.export save and load, as gdsec-audit loads it."""
    buffer = io.BytesIO()
    shapes = ({0: torch.export.Dim("batch")},)
    torch.export.save(torch.export.export(model, (ROWS[:4],), dynamic_shapes=shapes), buffer)
    buffer.seek(0)
    graph = torch.export.load(buffer).module()
    for name in ("train", "eval"):  # as audit.loading does
        vars(graph).pop(name, None)
    return graph


def _scripted(model: nn.Module) -> torch.jit.ScriptModule:
    """``model`` through torch.jit save and load."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model), buffer)
        buffer.seek(0)
        return torch.jit.load(buffer)


def _gradient(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    probe = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(probe).logsumexp(1).sum(), probe, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["rounded", "binarised"])
def test_graph_bypass_keeps_the_forward_pass_and_restores_a_gradient(kind):
    inner = _mlp()
    graph = _exported(_Rounded(inner) if kind == "rounded" else _Binarised(inner))
    before, code = _snapshot(graph), graph.code
    assert _gradient(graph, ROWS).abs().sum() == 0, "the model must block the gradient"
    twin, located, random = straight_through_graph(graph, ROWS)
    assert located and not random, located
    assert ("round" if kind == "rounded" else "aten.to") in located[0], located
    with torch.no_grad():
        assert torch.allclose(twin(ROWS), graph(ROWS), atol=1e-6)
    bpda = _gradient(twin, ROWS)
    straight = _gradient(inner, torch.round(ROWS * 2) / 2 if kind == "rounded" else ROWS)
    assert bpda.abs().sum() > 0 and (kind != "rounded" or torch.allclose(bpda, straight, atol=1e-5))
    assert graph.code == code and all(
        torch.equal(v, graph.state_dict()[k]) for k, v in before.items()
    )
    assert _gradient(graph, ROWS).abs().sum() == 0, "the original keeps its blocked gradient"


@pytest.mark.integration
def test_an_honest_graph_has_nothing_to_bypass():
    for model in (_mlp(), models.digits_cnn(channels=4, seed=0).eval()):
        twin, located, random = straight_through_graph(_exported(model), ROWS)
        assert located == () and random == ()


@pytest.mark.integration
def test_random_steps_are_listed_not_bypassed():
    _, located, random = straight_through_graph(_exported(_Noisy(_mlp())), ROWS)
    assert [s.split(" ")[0] for s in located] == ["round_1"], located
    assert random == ("rand_like",)


@pytest.mark.integration
def test_argmax_and_detach_are_bypassed_to_the_logits():
    honest = models.mlp(seed=3).eval()
    decoy = masking.DecoyGradient(honest, [models.mlp(seed=4).eval()])
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    stand_in = bpda_stand_in(decoy, x)
    assert any("aten.to" in s for s in stand_in.located), stand_in
    assert stand_in.route == "graph exported from the module"
    grads = []
    for model in (stand_in.model, honest):
        probe = x.clone().requires_grad_(True)
        grads.append(torch.autograd.grad(model(probe)[:, 3].sum(), probe)[0])
    assert torch.allclose(grads[0], 5 * grads[1], atol=1e-5), (
        "logit 3's gradient is 5 x the honest one"
    )


def test_a_quantiser_nested_in_a_submodule_gets_bpda_and_the_model_is_untouched():
    model = _Nested(_mlp())
    before = _snapshot(model)
    twin, found = straight_through_modules(model, ROWS)
    assert found == ("pre.0",)
    assert isinstance(twin.pre[0], attacks.StraightThrough) and isinstance(
        model.pre[0], masking.Quantize
    ), "the copy is changed, the original is not"
    assert twin.inner[1].weight is model.inner[1].weight, "parameters are shared, not copied"
    with torch.no_grad():
        assert torch.equal(twin(ROWS), model(ROWS))
    assert _gradient(twin, ROWS).abs().sum() > 0 and _gradient(model, ROWS).abs().sum() == 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.integration
def test_module_search_misses_an_inline_rounding_and_the_exported_graph_finds_it():
    model = _Rounded(_mlp())
    assert straight_through_modules(model, ROWS)[1] == ()
    stand_in = bpda_stand_in(model, ROWS)
    assert stand_in.route == "graph exported from the module" and "round" in stand_in.located[0]


def test_a_model_no_route_can_capture_is_reported_not_built():
    class Numpy(nn.Module):  # rounding outside torch: no hook, no graph
        def __init__(self) -> None:
            super().__init__()
            self.inner = _mlp()

        def forward(self, x):
            return self.inner(torch.from_numpy((x.detach().numpy() * 2).round() / 2))

    stand_in = bpda_stand_in(Numpy(), ROWS)
    assert stand_in.model is None and stand_in.route.startswith("not built"), stand_in


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["quantised", "nested", "rounded", "noisy", "honest"])
def test_torchscript_is_converted_and_the_saved_model_is_found_inside_a_wrapper(kind):
    inner = _mlp()
    build = {"quantised": lambda m: masking.defend(m, "quantize"), "nested": _Nested}
    build |= {"rounded": _Rounded, "noisy": _Noisy, "honest": lambda m: m}
    scripted = _scripted(build[kind](inner))
    for model in (scripted, PixelModel(scripted), PixelModel(_exported(build[kind](inner)))):
        stand_in = bpda_stand_in(model, ROWS)
        if kind == "honest":
            assert stand_in.model is None, stand_in
            continue
        assert any("round" in s for s in stand_in.located), stand_in
        assert ("rand_like" in " ".join(stand_in.random)) == (kind == "noisy"), stand_in
        assert _gradient(stand_in.model, ROWS).abs().sum() > 0
        if kind != "noisy":
            with torch.no_grad():
                assert torch.allclose(stand_in.model(ROWS), model(ROWS), atol=1e-6)


@pytest.mark.integration
def test_distilled_surrogate_learns_the_decisions_and_validates(digits):
    model = _Rounded(_mlp())
    x = digits.x_test[:64]
    student = adaptive.distil_surrogate(model, x, 0.1, steps=100, seed=0)
    with torch.no_grad():
        agree = (student(x).argmax(1) == model(x).argmax(1)).float().mean().item()
    assert agree > 0.8, agree
    again = adaptive.distil_surrogate(model, x, 0.1, steps=100, seed=0)
    assert all(
        torch.equal(a, b) for a, b in zip(student.parameters(), again.parameters(), strict=True)
    )
    for name, kwargs in (("eps", {"eps": -1.0}), ("steps", {"steps": 0}), ("x", {"x": x * 2})):
        with pytest.raises(ValueError, match=name):
            adaptive.distil_surrogate(model, **{"x": x, "eps": 0.1, **kwargs})


def test_copies_do_not_share_hooks_or_modes():
    model = masking.defend(copy.deepcopy(_mlp()), "quantize").train()
    bpda_stand_in(model, ROWS)
    assert model.training and not model._forward_pre_hooks and not model[0]._forward_pre_hooks
