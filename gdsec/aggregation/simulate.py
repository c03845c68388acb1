"""An in-process simulation of data-parallel SGD with honest and Byzantine workers.

:func:`simulate_batch` runs many settings (rule, attackers, attack, clipping, seed) of one architecture
at once: every honest gradient of every run is computed in one vectorised call per round, and the
attackers' rows and the aggregation are vectorised over the runs that share a setting. :func:`simulate`
is one run of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from gdsec.aggregation.byzantine import BYZANTINE_ATTACKS, _craft_rows
from gdsec.aggregation.rules import AGGREGATORS, _aggregate_rows, _clip_rows, check_f
from gdsec.env import progress as progress_bar
from gdsec.streams import random_stream
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

__all__ = ["Setting", "Simulation", "simulate", "simulate_batch"]


class Simulation(NamedTuple):
    """One simulated data-parallel run: test accuracy after each evaluation, where, cost and weights.

    ``trajectory`` holds the flat weights at each evaluation step (row ``i`` at ``steps[i]``).

    Taught in chapter 4.
    """

    steps: list[int]
    accuracy: list[float]
    aggregation_seconds: float
    diverged: bool
    final_params: torch.Tensor
    trajectory: torch.Tensor


class Setting(NamedTuple):
    """One run of :func:`simulate_batch`: rule, attackers, attack, what the rule is told, clipping, seed.

    ``aggregator_f`` (default ``f``) is the number of attackers trimmed mean and Krum are told to expect.

    Taught in chapter 4.
    """

    aggregator: str = "mean"
    f: int = 0
    attack: str = "none"
    aggregator_f: int | None = None
    max_norm: float | None = None
    seed: int = 0


def _check_eval_data(eval_data: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``eval_data`` if it is a tuple (x_test, y_test) of a batch and its labels."""
    if not isinstance(eval_data, tuple) or len(eval_data) != 2:
        raise ValueError("eval_data must be a tuple (x_test, y_test)")
    check_batch("eval_data[0]", eval_data[0])
    check_labels("eval_data[1]", eval_data[1], n=eval_data[0].shape[0])
    return eval_data


def _check_setting(setting: object, n_workers: int) -> Setting:
    """``setting`` if it is a valid :class:`Setting` for ``n_workers`` workers; else ``ValueError``."""
    if not isinstance(setting, Setting):
        raise ValueError(f"settings must hold gdsec.aggregation.Setting values, got {type(setting).__name__}")
    check_choice("aggregator", setting.aggregator, AGGREGATORS)
    check_int("f", setting.f, low=0, high=n_workers - 1)
    check_choice("attack", setting.attack, BYZANTINE_ATTACKS)
    told = setting.f if setting.aggregator_f is None else check_int("aggregator_f", setting.aggregator_f, low=0)
    if setting.aggregator in ("trimmed_mean", "krum"):
        check_f(told, n_workers, setting.aggregator)
    if setting.max_norm is not None:
        check_number("max_norm", setting.max_norm, low=0.0, low_open=True)
    check_seed(setting.seed)
    return setting._replace(aggregator_f=told)


def _check_models(models: object) -> list[nn.Module]:
    """``models`` as a non-empty list of models with identical parameter names and shapes."""
    if isinstance(models, nn.Module) or not isinstance(models, Sequence) or not models:
        raise ValueError("models must be a non-empty list of models (one per setting)")
    shapes = None
    for index, model in enumerate(models):
        check_model(f"models[{index}]", model)
        these = [(name, p.shape) for name, p in model.named_parameters()]
        if shapes is not None and these != shapes:
            raise ValueError(f"models[{index}] has other parameters than models[0]; all need one architecture")
        shapes = these
    return list(models)


def _groups(keys: list[tuple]) -> dict[tuple, torch.Tensor]:
    """Indices of the runs sharing each key, in first-seen order."""
    out: dict[tuple, list[int]] = {}
    for index, key in enumerate(keys):
        out.setdefault(key, []).append(index)
    return {key: torch.tensor(value) for key, value in out.items()}


def simulate_batch(
    models: Sequence[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    settings: Sequence[Setting],
    eval_data: tuple[torch.Tensor, torch.Tensor],
    n_workers: int = 10,
    lr: float = 0.5,
    steps: int = 100,
    batch_size: int = 32,
    eval_every: int = 10,
    scale: float | None = None,
    attacker_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    progress: bool = False,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> list[Simulation]:
    """Data-parallel SGD for every ``settings[i]`` from ``models[i]``'s weights, all runs at once.

    In run ``i``, the first ``f`` of ``n_workers`` workers are Byzantine; honest worker ``j`` draws a
    mini-batch from its own shard of (x, y) each step (shards and batches from the run's ``seed``). The
    attackers send ``byzantine_gradients`` (for ``attack="targeted"``, ``scale`` (10) x the gradient that
    teaches ``attacker_data``'s labels). Rows are clipped to ``max_norm`` if set, combined by the rule
    and applied as w <- w - lr * g. ``on_step(step, grads)`` sees every round's submissions as sent,
    before clipping, shape (runs, n_workers, d). Models are not modified. A run whose weights stop being
    finite (or exceed 1e6) is marked ``diverged`` and stops there. Each run equals the same run alone
    (up to floating-point rounding: batched arithmetic may sum in another order).

    Taught in chapter 4.
    """
    models = _check_models(models)
    if isinstance(settings, Setting) or not isinstance(settings, Sequence) or len(settings) != len(models):
        raise ValueError("settings must be a list of Setting, one per model")
    check_unit_tensor("x", x, min_dim=2)
    check_labels("y", y, n=x.shape[0])
    check_int("n_workers", n_workers, low=1, high=x.shape[0])
    runs = [_check_setting(s, n_workers) for s in settings]
    eval_data = _check_eval_data(eval_data)
    check_number("lr", lr, low=0.0, low_open=True)
    check_int("steps", steps, low=1)
    check_int("eval_every", eval_every, low=1)
    if scale is not None:
        check_number("scale", scale, low=0.0)
    if any(r.attack == "targeted" and r.f > 0 for r in runs) and attacker_data is None:
        raise ValueError("attacker_data must be given (inputs, wanted labels) for attack='targeted'")
    generators = [random_stream(r.seed, "aggregation.simulate") for r in runs]
    shards = [torch.randperm(x.shape[0], generator=g).chunk(n_workers - r.f) for g, r in zip(generators, runs, strict=True)]
    check_int("batch_size", batch_size, low=1, high=min(len(s) for run in shards for s in run))
    tables, lengths = [], []
    for run_shards in shards:
        padded = torch.zeros(n_workers, max(len(s) for s in run_shards), dtype=torch.long)
        sizes = torch.ones(n_workers, dtype=torch.long)
        for j, shard in enumerate(run_shards, start=n_workers - len(run_shards)):
            padded[j, : len(shard)], sizes[j] = shard, len(shard)
        tables.append(padded)
        lengths.append(sizes)

    template = models[0]
    layout = [(name, p.shape, p.numel()) for name, p in template.named_parameters()]

    def unflat(vector: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = vector.split([size for _, _, size in layout])
        return {name: part.reshape(shape) for (name, shape, _), part in zip(layout, parts, strict=True)}

    def loss_at(vector: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(functional_call(template, unflat(vector), (xb,)), yb)

    per_worker = vmap(vmap(grad(loss_at), in_dims=(None, 0, 0)), in_dims=(0, 0, 0))
    on_attacker = vmap(grad(loss_at), in_dims=(0, None, None))

    def accuracy(vectors: torch.Tensor) -> list[float]:
        with torch.no_grad():
            logits = vmap(lambda v: functional_call(template, unflat(v), (eval_data[0],)))(vectors)
        return (logits.argmax(-1) == eval_data[1]).float().mean(-1).tolist()

    theta = torch.stack([torch.cat([p.detach().reshape(-1) for p in m.parameters()]) for m in models]).clone()
    crafts = _groups([(r.f, r.attack) for r in runs])
    rules = _groups([(r.aggregator, r.aggregator_f) for r in runs])
    limits = torch.tensor([float("inf") if r.max_norm is None else r.max_norm for r in runs], dtype=theta.dtype)
    clip_any = any(r.max_norm is not None for r in runs)
    count = len(runs)
    steps_seen = [[0] for _ in runs]
    accs = [[a] for a in accuracy(theta)]
    snapshots = [[theta[i].clone()] for i in range(count)]
    seconds = [0.0] * count
    alive = torch.ones(count, dtype=torch.bool)
    final: list[torch.Tensor | None] = [None] * count
    for step in progress_bar(range(1, steps + 1), desc="steps", leave=False, disable=not progress):
        picks = torch.stack([
            table.gather(1, torch.randint(2**31 - 1, (n_workers, batch_size), generator=g) % size[:, None])
            for table, size, g in zip(tables, lengths, generators, strict=True)
        ])
        grads = per_worker(theta, x[picks], y[picks]).detach()
        for (f, attack), index in crafts.items():
            if f == 0:
                continue
            if attack == "targeted":
                boost = 10.0 if scale is None else scale
                evil = boost * on_attacker(theta[index], *attacker_data).detach()
                grads[index, :f] = evil.unsqueeze(1).expand(-1, f, -1)
            else:
                seeds = [runs[i].seed + step for i in index.tolist()]
                grads[index, :f] = _craft_rows(grads[index, f:], f=f, attack=attack, scale=scale, seeds=seeds)
        if on_step is not None:
            on_step(step, grads.clone())
        submitted = _clip_rows(grads, limits) if clip_any else grads
        update = torch.empty_like(theta)
        for (name, told), index in rules.items():
            start = time.perf_counter()
            update[index] = _aggregate_rows(name, submitted[index], told)
            share = (time.perf_counter() - start) / len(index)
            for i in index.tolist():
                seconds[i] += share
        stepped = theta - lr * update
        broken = alive & ~(torch.isfinite(stepped).all(dim=1) & (stepped.abs().amax(dim=1) <= 1e6))
        for i in broken.nonzero().flatten().tolist():
            final[i] = stepped[i].clone()
            steps_seen[i].append(step)
            accs[i].append(float("nan"))
        alive &= ~broken
        theta = torch.where(alive[:, None], stepped, theta)
        if not alive.any():
            break
        if step % eval_every == 0 or step == steps:
            live = alive.nonzero().flatten().tolist()
            for i, value in zip(live, accuracy(theta[live]), strict=True):
                steps_seen[i].append(step)
                accs[i].append(value)
                snapshots[i].append(theta[i].clone())
    return [
        Simulation(steps_seen[i], accs[i], seconds[i], final[i] is not None,
                   theta[i].clone() if final[i] is None else final[i], torch.stack(snapshots[i]))
        for i in range(count)
    ]


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

    One run of :func:`simulate_batch` (see there); ``on_step(step, grads)`` sees each round's
    submissions, shape (n_workers, d), before clipping. ``attack`` is one of ``BYZANTINE_ATTACKS``.

    Taught in chapter 4.
    """
    check_model("model", model)
    setting = Setting(aggregator, f, attack, aggregator_f, max_norm, seed)
    single = None if on_step is None else (lambda step, grads: on_step(step, grads[0]))
    (run,) = simulate_batch(
        [model], x, y, settings=[setting], eval_data=eval_data, n_workers=n_workers, lr=lr, steps=steps,
        batch_size=batch_size, eval_every=eval_every, scale=scale, attacker_data=attacker_data, progress=progress,
        on_step=single,
    )
    return run
