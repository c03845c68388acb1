"""Defences against gradient leakage, measured against the same attack: noise, pruning and DP-SGD (Opacus)."""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from gdsec.leakage.gradients import check_inputs, client_gradients, trainable
from gdsec.streams import random_stream, seeded_global_rng
from gdsec.validation import check_choice, check_int, check_number, check_seed

__all__ = [
    "PRUNE_SCOPES",
    "DPTraining",
    "add_gradient_noise",
    "dp_epsilon",
    "dp_gradients",
    "dp_train",
    "prune_gradients",
]

#: Opacus warnings that are expected in a teaching setting and carry no information for the reader.
_OPACUS_EXPECTED = (
    r"Secure RNG turned off",
    r"Full backward hook is firing when gradients are computed with respect to module outputs",
    r"Optimal order is the (smallest|largest) alpha",
)


def add_gradient_noise(
    grads: Sequence[torch.Tensor], sigma: float, *, seed: int = 0
) -> list[torch.Tensor]:
    """A copy of ``grads`` with independent Gaussian noise of standard deviation ``sigma`` per entry.

    Taught in chapter 9.
    """
    check_number("sigma", sigma, low=0.0)
    generator = random_stream(seed, "leakage.gradient_noise")
    return [
        g.detach() + sigma * torch.randn(g.shape, generator=generator, dtype=g.dtype) for g in grads
    ]


#: How ``prune_gradients`` ranks entries: within each tensor, or across the whole gradient at once.
PRUNE_SCOPES = ("tensor", "global")


def prune_gradients(
    grads: Sequence[torch.Tensor], fraction: float, *, scope: str = "tensor"
) -> list[torch.Tensor]:
    """A copy of ``grads`` with the ``fraction`` smallest-magnitude entries set to zero.

    ``scope="tensor"`` prunes that fraction of every tensor; ``scope="global"`` ranks all entries of
    all tensors together, so a layer with small entries can lose more than ``fraction`` of them.
    Taught in chapter 9.
    """
    check_number("fraction", fraction, low=0.0, high=1.0)
    check_choice("scope", scope, PRUNE_SCOPES)
    if scope == "global":
        flat = torch.cat([g.detach().reshape(-1) for g in grads])
        k = int(round(fraction * flat.numel()))
        keep = torch.ones_like(flat, dtype=torch.bool)
        if k > 0:
            keep[torch.argsort(flat.abs())[:k]] = False
        masks = torch.split(keep, [g.numel() for g in grads])
        return [
            torch.where(m.reshape(g.shape), g.detach(), 0.0)
            for g, m in zip(grads, masks, strict=True)
        ]
    pruned = []
    for g in grads:
        k = int(round(fraction * g.numel()))
        out = g.detach().clone().reshape(-1)
        if k > 0:
            out[torch.argsort(out.abs())[:k]] = 0
        pruned.append(out.reshape(g.shape))
    return pruned


def dp_gradients(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    max_norm: float = 1.0,
    noise_multiplier: float,
    seed: int = 0,
) -> list[torch.Tensor]:
    """The DP-SGD update of a batch (Abadi et al. 2016), as Opacus computes it with flat clipping.

    Each example's gradient is clipped to L2 norm ``max_norm`` (C), the clipped gradients are
    summed, Gaussian noise of standard deviation ``noise_multiplier * C`` is added, and the sum is
    divided by the batch size. The model and its ``.grad`` are left untouched.
    Taught in chapter 9.
    """
    check_inputs(model, x, y)
    clip = check_number("max_norm", max_norm, low=0.0, low_open=True)
    sigma = check_number("noise_multiplier", noise_multiplier, low=0.0)
    check_seed(seed)
    total = [torch.zeros_like(p) for p in trainable(model)]
    for i in range(x.shape[0]):
        per_example = client_gradients(model, x[i : i + 1], y[i : i + 1])
        norm = torch.sqrt(sum((g * g).sum() for g in per_example))
        factor = (clip / (norm + 1e-6)).clamp(max=1.0)
        total = [t + factor * g for t, g in zip(total, per_example, strict=True)]
    noisy = add_gradient_noise(total, sigma * clip, seed=seed)
    return [g / x.shape[0] for g in noisy]


def dp_epsilon(
    noise_multiplier: float, *, sample_rate: float, steps: int, delta: float = 1e-5
) -> float:
    """Opacus's RDP accountant: the epsilon of ``steps`` DP-SGD steps at this noise and sampling rate.

    ``sample_rate=1, steps=1`` is one unamplified release of a clipped, noised gradient (the
    Gaussian mechanism), what an attacker who knows the example took part sees; amplification by
    subsampling (``sample_rate < 1``) holds only while the sampling stays secret from the adversary.
    Taught in chapter 9.
    """
    sigma = check_number("noise_multiplier", noise_multiplier, low=0.0)
    check_number("sample_rate", sample_rate, low=0.0, high=1.0, low_open=True)
    check_int("steps", steps, low=1)
    check_number("delta", delta, low=0.0, high=1.0, low_open=True, high_open=True)
    if sigma == 0:
        return math.inf
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(sigma, sample_rate, steps)]
    with warnings.catch_warnings():
        for message in _OPACUS_EXPECTED:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        return float(accountant.get_epsilon(delta))


class DPTraining(NamedTuple):
    """What a DP-SGD run spent: Opacus's epsilon at ``delta``, and the run's settings.

    Taught in chapter 9.
    """

    epsilon: float
    delta: float
    noise_multiplier: float
    max_norm: float
    sample_rate: float
    steps: int


def dp_train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    noise_multiplier: float,
    max_norm: float = 1.0,
    lr: float = 0.01,
    epochs: int = 10,
    batch_size: int = 64,
    delta: float = 1e-5,
    seed: int = 0,
) -> DPTraining:
    """Train ``model`` in place with DP-Adam through Opacus (Poisson sampling, flat clipping).

    Returns Opacus's RDP accountant's epsilon at ``delta`` (example-level, central DP). Opacus runs
    with ``secure_mode`` off: the noise comes from a seeded pseudo-random generator, so the guarantee
    is a teaching one, not cryptographically sound. Opacus's expected warnings (secure RNG off,
    backward hooks on inputs without grad, alpha range) are silenced here by message. The model is
    left in eval mode, without Opacus hooks.
    Taught in chapter 9.
    """
    check_inputs(model, x, y)
    sigma = check_number("noise_multiplier", noise_multiplier, low=0.0)
    clip = check_number("max_norm", max_norm, low=0.0, low_open=True)
    check_number("lr", lr, low=0.0, low_open=True)
    check_int("epochs", epochs, low=1)
    check_int("batch_size", batch_size, low=1, high=x.shape[0])
    check_number("delta", delta, low=0.0, high=1.0, low_open=True, high_open=True)
    check_seed(seed)
    from opacus import PrivacyEngine

    work = copy.deepcopy(model)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y),
        batch_size=batch_size,
        generator=random_stream(seed, "leakage.dp_train.sampling"),
    )
    with warnings.catch_warnings():
        for message in _OPACUS_EXPECTED:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        engine = PrivacyEngine(accountant="rdp")
        private, optimizer, private_loader = engine.make_private(
            module=work,
            optimizer=torch.optim.Adam(work.parameters(), lr=lr),
            data_loader=loader,
            noise_multiplier=sigma,
            max_grad_norm=clip,
            noise_generator=random_stream(seed, "leakage.dp_train.noise"),
        )
        private.train()
        steps = 0
        with seeded_global_rng(seed, "leakage.dp_train.global"):
            for _ in range(epochs):
                for xb, yb in private_loader:
                    optimizer.zero_grad(set_to_none=True)
                    nn.functional.cross_entropy(private(xb), yb).backward()
                    optimizer.step()
                    steps += 1
        epsilon = math.inf if sigma == 0 else float(engine.get_epsilon(delta))
        private.remove_hooks()
    model.load_state_dict(work.state_dict())
    model.eval()
    return DPTraining(epsilon, delta, sigma, clip, 1.0 / len(loader), steps)
