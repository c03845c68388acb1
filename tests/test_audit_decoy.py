"""The decoy wrapper (gdsec.masking.DecoyGradient) and how the audit's flags rate it."""

from __future__ import annotations

import pytest
import torch

from gdsec import masking, models


def _small(seed: int, classes: int = 10) -> torch.nn.Module:
    """An untrained seeded MLP (8x8 inputs): decisions and gradients are all the tests need."""
    return models.mlp(64, classes, hidden=16, seed=seed).eval()


def test_decoy_keeps_decisions_and_returns_the_decoys_gradient():
    honest, decoys = _small(0), [_small(10), _small(11)]
    wrapper = masking.DecoyGradient(honest, decoys)
    x = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out = wrapper(x)
    assert torch.equal(out.argmax(1), honest(x).argmax(1))
    weights = torch.rand(20, 10, generator=torch.Generator().manual_seed(1))
    xw = x.clone().requires_grad_(True)
    (got,) = torch.autograd.grad((wrapper(xw) * weights).sum(), xw)
    xd = x.clone().requires_grad_(True)
    mean = torch.stack([d(xd) for d in decoys]).mean(0)
    (want,) = torch.autograd.grad((mean * weights).sum(), xd)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-7)
    # the honest model's parameters stay in the graph, with zero gradient
    params = list(honest.parameters())
    grads = torch.autograd.grad(wrapper(x).sum(), params)
    assert all(g is not None and torch.equal(g, torch.zeros_like(g)) for g in grads)


def test_decoy_scores_are_flat():
    wrapper = masking.DecoyGradient(_small(0), [_small(10)], scale=5.0, offset=0.5)
    out = wrapper(torch.rand(7, 1, 8, 8, generator=torch.Generator().manual_seed(2))).detach()
    onehot = torch.nn.functional.one_hot(out.argmax(1), 10).float()
    assert torch.allclose(out - torch.linspace(0, 0.5, 10), 5.0 * onehot, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"decoys": []}, "decoys"),
        ({"decoys": "not a model"}, "decoys"),
        ({"scale": 0.0}, "scale"),
        ({"offset": -1.0}, "offset"),
        ({"scale": 1.0, "offset": 1.0}, "offset"),
    ],
)
def test_decoy_validates(kwargs, name):
    args = {"decoys": [_small(1)], **kwargs}
    with pytest.raises(ValueError, match=name):
        masking.DecoyGradient(_small(0), **args)


def test_decoy_rejects_decoys_of_another_shape():
    wrapper = masking.DecoyGradient(_small(0), [_small(1, classes=3)])
    with pytest.raises(ValueError, match="decoys"):
        wrapper(torch.rand(2, 1, 8, 8))
