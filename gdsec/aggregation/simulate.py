"""An in-process simulation of data-parallel SGD with honest and Byzantine workers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from gdsec.aggregation.byzantine import BYZANTINE_ATTACKS, byzantine_gradients
from gdsec.aggregation.rules import AGGREGATORS, aggregate, check_f, clip_updates
from gdsec.env import progress as progress_bar
from gdsec.validation import (
    check_batch,
    check_choice,
    check_int,
    check_labels,
    check_model,
    check_number,
    check_seed,
    check_unit_tensor,
)

__all__ = ["Simulation", "simulate"]


class Simulation(NamedTuple):
    """One simulated data-parallel run: test accuracy after each evaluation, where, and aggregation cost.

    Taught in chapter 4.
    """

    steps: list[int]
    accuracy: list[float]
    aggregation_seconds: float
    diverged: bool
    final_params: torch.Tensor


def _flat(params: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.reshape(-1) for p in params.values()])


def _unflat(vector: torch.Tensor, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out, start = {}, 0
    for name, p in like.items():
        out[name] = vector[start : start + p.numel()].reshape(p.shape)
        start += p.numel()
    return out


def _accuracy(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (functional_call(model, params, (x,)).argmax(1) == y).float().mean().item()


def _check_eval_data(eval_data: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``eval_data`` if it is a tuple (x_test, y_test) of a batch and its labels."""
    if not isinstance(eval_data, tuple) or len(eval_data) != 2:
        raise ValueError("eval_data must be a tuple (x_test, y_test)")
    check_batch("eval_data[0]", eval_data[0])
    check_labels("eval_data[1]", eval_data[1], n=eval_data[0].shape[0])
    return eval_data


def simulate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eval_data: tuple[torch.Tensor, torch.Tensor],
    n_workers: int = 10,
    f: int = 0,
    attack: str = "none",
    aggregator: str = "mean",
    aggregator_f: int | None = None,
    lr: float = 0.5,
    steps: int = 100,
    batch_size: int = 32,
    eval_every: int = 10,
    max_norm: float | None = None,
    scale: float | None = None,
    attacker_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int = 0,
    progress: bool = False,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> Simulation:
    """Data-parallel SGD on ``n_workers`` simulated workers, the first ``f`` of them Byzantine.

    Honest worker ``i`` draws a mini-batch from its own shard of (x, y) each step; the attackers send
    ``byzantine_gradients`` (or, for ``attack="targeted"``, ``scale`` (10) x the gradient that teaches
    ``attacker_data``'s labels). Rows are optionally clipped to ``max_norm``, combined by ``aggregator``
    (tolerating ``aggregator_f``, default ``f``) and applied as w <- w - lr * g. ``on_step(step,
    grads)`` sees every round's submissions. ``model`` only supplies the architecture and initial
    weights; it is not modified. A run whose weights stop being finite is marked ``diverged``.
    ``attack`` is one of ``BYZANTINE_ATTACKS``.

    Taught in chapter 4.
    """
    check_model("model", model)
    check_unit_tensor("x", x, min_dim=2)
    check_labels("y", y, n=x.shape[0])
    eval_data = _check_eval_data(eval_data)
    check_int("n_workers", n_workers, low=1, high=x.shape[0])
    check_int("f", f, low=0, high=n_workers - 1)
    check_choice("attack", attack, BYZANTINE_ATTACKS)
    check_choice("aggregator", aggregator, AGGREGATORS)
    agg_f = f if aggregator_f is None else aggregator_f
    if aggregator in ("trimmed_mean", "krum"):
        check_f(agg_f, n_workers, aggregator)
    check_number("lr", lr, low=0.0, low_open=True)
    check_int("steps", steps, low=1)
    check_int("eval_every", eval_every, low=1)
    if max_norm is not None:
        check_number("max_norm", max_norm, low=0.0, low_open=True)
    if attack == "targeted" and attacker_data is None and f > 0:
        raise ValueError("attacker_data must be given (inputs, wanted labels) for attack='targeted'")
    generator = check_seed(seed)
    honest_count = n_workers - f
    shards = torch.randperm(x.shape[0], generator=generator).chunk(honest_count)
    check_int("batch_size", batch_size, low=1, high=min(len(s) for s in shards))
    params = {name: p.detach().clone() for name, p in model.named_parameters()}
    like = params

    def loss_at(weights: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(functional_call(model, weights, (xb,)), yb)

    per_worker_dict = vmap(grad(loss_at), in_dims=(None, 0, 0))

    def per_worker(vector: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        grads = per_worker_dict(_unflat(vector, like), xb, yb)
        return torch.cat([g.reshape(xb.shape[0], -1) for g in grads.values()], dim=1)

    def full_grad(vector: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return _flat(grad(loss_at)(_unflat(vector, like), xb, yb))

    theta = _flat(params)
    history_steps, history_acc = [0], [_accuracy(model, params, *eval_data)]
    seconds, diverged = 0.0, False
    for step in progress_bar(range(1, steps + 1), desc="steps", leave=False, disable=not progress):
        picks = [s[torch.randint(len(s), (batch_size,), generator=generator)] for s in shards]
        index = torch.stack(picks)
        honest = per_worker(theta, x[index], y[index]).detach()
        if attack == "targeted" and f > 0:
            boost = 10.0 if scale is None else scale
            evil = boost * full_grad(theta, *attacker_data).detach()
            bad = evil.expand(f, -1)
        else:
            bad = byzantine_gradients(honest, f=f, attack=attack if f else "none", scale=scale, seed=seed + step)
        submitted = torch.cat([bad, honest])
        if max_norm is not None:
            submitted = clip_updates(submitted, max_norm=max_norm)
        if on_step is not None:
            on_step(step, submitted.clone())
        start = time.perf_counter()
        update = aggregate(aggregator, submitted, f=agg_f)
        seconds += time.perf_counter() - start
        theta = theta - lr * update
        if not torch.isfinite(theta).all() or theta.abs().max() > 1e6:
            diverged = True
            history_steps.append(step)
            history_acc.append(float("nan"))
            break
        if step % eval_every == 0 or step == steps:
            history_steps.append(step)
            history_acc.append(_accuracy(model, _unflat(theta, like), *eval_data))
    return Simulation(history_steps, history_acc, seconds, diverged, theta)
