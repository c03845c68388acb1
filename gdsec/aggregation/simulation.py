"""An in-process simulation of data-parallel SGD with honest and Byzantine workers.

:func:`simulate_batch` runs many settings (rule, attackers, attack, clipping, seed) of one architecture
at once: every honest gradient of every run is computed in one vectorised call per round, and the
attackers' rows and the aggregation are vectorised over the runs that share a setting. :func:`simulate`
is one run of it. Each round has its phase below: draw the workers' batches, compute their gradients,
craft the Byzantine rows, clip, aggregate, step, mark divergence, evaluate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from gdsec.aggregation.byzantine import _craft_rows
from gdsec.aggregation.rules import _aggregate_rows, _clip_rows
from gdsec.aggregation.settings import (
    Setting,
    SimulationRecipe,
    _check_simulation_args,
    check_eval_data,
)
from gdsec.env import progress as progress_bar
from gdsec.streams import random_stream
from gdsec.validation import check_int, check_model

__all__ = ["Simulation", "simulate", "simulate_batch"]

_XY = tuple[torch.Tensor, torch.Tensor]


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


class _Functional:
    """The shared architecture as functions of a flat weight vector: loss gradients and logits."""

    def __init__(self, template: nn.Module) -> None:
        self.template = template
        self.layout = [(name, p.shape, p.numel()) for name, p in template.named_parameters()]
        # per_worker: (runs, d) x (runs, workers, batch, ...) -> (runs, workers, d)
        self.per_worker = vmap(vmap(grad(self.loss), in_dims=(None, 0, 0)), in_dims=(0, 0, 0))
        # on_data: (runs, d) x one shared batch -> (runs, d)
        self.on_data = vmap(grad(self.loss), in_dims=(0, None, None))

    def unflat(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = vector.split([size for _, _, size in self.layout])
        return {
            name: part.reshape(shape)
            for (name, shape, _), part in zip(self.layout, parts, strict=True)
        }

    def loss(self, vector: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        logits = functional_call(self.template, self.unflat(vector), (xb,))
        return nn.functional.cross_entropy(logits, yb)

    def accuracy(self, vectors: torch.Tensor, eval_data: _XY) -> list[float]:
        with torch.no_grad():
            call = lambda v: functional_call(self.template, self.unflat(v), (eval_data[0],))  # noqa: E731
            logits = vmap(call)(vectors)
        return (logits.argmax(-1) == eval_data[1]).float().mean(-1).tolist()


@dataclass
class _Record:
    """What each run has measured so far, and which runs are still alive."""

    steps: list[list[int]]
    accuracy: list[list[float]]
    snapshots: list[list[torch.Tensor]]
    alive: torch.Tensor
    seconds: list[float] = field(default_factory=list)
    final: list[torch.Tensor | None] = field(default_factory=list)


def _groups(keys: list[tuple]) -> dict[tuple, torch.Tensor]:
    """Indices of the runs sharing each key, in first-seen order."""
    out: dict[tuple, list[int]] = {}
    for index, key in enumerate(keys):
        out.setdefault(key, []).append(index)
    return {key: torch.tensor(value) for key, value in out.items()}


def _shard(
    n: int, runs: list[Setting], generators: list[torch.Generator], recipe: SimulationRecipe
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Each run's honest shards as a padded (n_workers, longest) index table and the shard sizes."""
    shards = [
        torch.randperm(n, generator=g).chunk(recipe.n_workers - r.f)
        for g, r in zip(generators, runs, strict=True)
    ]
    smallest = min(len(s) for run in shards for s in run)
    check_int("batch_size", recipe.batch_size, low=1, high=smallest)
    tables, lengths = [], []
    for run_shards in shards:
        padded = torch.zeros(recipe.n_workers, max(len(s) for s in run_shards), dtype=torch.long)
        sizes = torch.ones(recipe.n_workers, dtype=torch.long)
        for j, shard in enumerate(run_shards, start=recipe.n_workers - len(run_shards)):
            padded[j, : len(shard)], sizes[j] = shard, len(shard)
        tables.append(padded)
        lengths.append(sizes)
    return tables, lengths


def _draw_batches(
    tables: list[torch.Tensor],
    lengths: list[torch.Tensor],
    generators: list[torch.Generator],
    recipe: SimulationRecipe,
) -> torch.Tensor:
    """This round's row indices, (runs, n_workers, batch_size): each worker's draw from its shard."""
    shape = (recipe.n_workers, recipe.batch_size)
    return torch.stack(
        [
            table.gather(1, torch.randint(2**31 - 1, shape, generator=g) % size[:, None])
            for table, size, g in zip(tables, lengths, generators, strict=True)
        ]
    )


def _craft(
    grads: torch.Tensor,
    theta: torch.Tensor,
    runs: list[Setting],
    step: int,
    *,
    functional: _Functional,
    scale: float | None,
    attacker_data: _XY | None,
) -> None:
    """Overwrite the first ``f`` rows of each run's ``grads`` with what its attackers send."""
    for (f, attack), index in _groups([(r.f, r.attack) for r in runs]).items():
        if f == 0:
            continue
        if attack == "targeted":
            boost = 10.0 if scale is None else scale
            evil = boost * functional.on_data(theta[index], *attacker_data).detach()
            grads[index, :f] = evil.unsqueeze(1).expand(-1, f, -1)
        else:
            seeds = [runs[i].seed + step for i in index.tolist()]
            honest = grads[index, f:]
            grads[index, :f] = _craft_rows(honest, f=f, attack=attack, scale=scale, seeds=seeds)


def _aggregate(submitted: torch.Tensor, runs: list[Setting], seconds: list[float]) -> torch.Tensor:
    """Each run's rule applied to its submissions (runs, n_workers, d); time split over the runs."""
    update = torch.empty(submitted.shape[0], submitted.shape[2], dtype=submitted.dtype)
    for (name, told), index in _groups([(r.aggregator, r.aggregator_f) for r in runs]).items():
        start = time.perf_counter()
        update[index] = _aggregate_rows(name, submitted[index], told)
        share = (time.perf_counter() - start) / len(index)
        for i in index.tolist():
            seconds[i] += share
    return update


def _mark_diverged(record: _Record, stepped: torch.Tensor, step: int) -> None:
    """Runs whose new weights are non-finite or beyond 1e6 stop here: keep them, accuracy NaN."""
    finite = torch.isfinite(stepped).all(dim=1) & (stepped.abs().amax(dim=1) <= 1e6)
    broken = record.alive & ~finite
    for i in broken.nonzero().flatten().tolist():
        record.final[i] = stepped[i].clone()
        record.steps[i].append(step)
        record.accuracy[i].append(float("nan"))
    record.alive &= ~broken


def _evaluate(
    record: _Record, theta: torch.Tensor, step: int, functional: _Functional, eval_data: _XY
) -> None:
    """Note the live runs' test accuracy and weights at ``step``."""
    live = record.alive.nonzero().flatten().tolist()
    for i, value in zip(live, functional.accuracy(theta[live], eval_data), strict=True):
        record.steps[i].append(step)
        record.accuracy[i].append(value)
        record.snapshots[i].append(theta[i].clone())


def simulate_batch(
    models: Sequence[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    settings: Sequence[Setting],
    recipe: SimulationRecipe,
    eval_data: _XY,
    scale: float | None = None,
    attacker_data: _XY | None = None,
    progress: bool = False,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> list[Simulation]:
    """_XY-parallel SGD for every ``settings[i]`` from ``models[i]``'s weights, all runs at once.

    In run ``i``, the first ``f`` of ``recipe.n_workers`` workers are Byzantine; honest worker ``j``
    draws a mini-batch from its own shard of (x, y) each step (shards and batches from the run's
    ``seed``). The attackers send the rows of ``CRAFTED_ATTACKS`` (for ``attack="targeted"``,
    ``scale`` (10) x the gradient that teaches ``attacker_data``'s labels). Rows are clipped to
    ``max_norm`` if set, combined by the rule and applied as w <- w - lr * g. ``on_step(step, grads)``
    sees every round's submissions as sent, before clipping, shape (runs, n_workers, d). Models are
    not modified. A run whose weights stop being finite (or exceed 1e6) is marked ``diverged`` and
    stops there. Each run equals the same run alone (up to floating-point rounding: batched
    arithmetic may sum in another order).

    Taught in chapter 4.
    """
    models, runs = _check_simulation_args(models, x, y, settings, recipe, scale, attacker_data)
    eval_data = check_eval_data(eval_data)
    generators = [random_stream(r.seed, "aggregation.simulate") for r in runs]
    tables, lengths = _shard(x.shape[0], runs, generators, recipe)
    functional = _Functional(models[0])
    theta = torch.stack([nn.utils.parameters_to_vector(m.parameters()).detach() for m in models])
    theta = theta.clone()
    norms = [torch.inf if r.max_norm is None else r.max_norm for r in runs]
    limits = torch.tensor(norms, dtype=theta.dtype)
    clip_any = any(r.max_norm is not None for r in runs)
    count = len(runs)
    record = _Record(
        steps=[[0] for _ in runs],
        accuracy=[[a] for a in functional.accuracy(theta, eval_data)],
        snapshots=[[theta[i].clone()] for i in range(count)],
        alive=torch.ones(count, dtype=torch.bool),
        seconds=[0.0] * count,
        final=[None] * count,
    )
    rounds = range(1, recipe.steps + 1)
    for step in progress_bar(rounds, desc="steps", leave=False, disable=not progress):
        picks = _draw_batches(tables, lengths, generators, recipe)
        grads = functional.per_worker(theta, x[picks], y[picks]).detach()
        _craft(grads, theta, runs, step, functional=functional, scale=scale,
               attacker_data=attacker_data)  # fmt: skip
        if on_step is not None:
            on_step(step, grads.clone())
        submitted = _clip_rows(grads, limits) if clip_any else grads
        stepped = theta - recipe.lr * _aggregate(submitted, runs, record.seconds)
        _mark_diverged(record, stepped, step)
        theta = torch.where(record.alive[:, None], stepped, theta)
        if not record.alive.any():
            break
        if step % recipe.eval_every == 0 or step == recipe.steps:
            _evaluate(record, theta, step, functional, eval_data)
    return [
        Simulation(
            record.steps[i],
            record.accuracy[i],
            record.seconds[i],
            record.final[i] is not None,
            theta[i].clone() if record.final[i] is None else record.final[i],
            torch.stack(record.snapshots[i]),
        )
        for i in range(count)
    ]


def simulate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    setting: Setting,
    recipe: SimulationRecipe,
    eval_data: _XY,
    scale: float | None = None,
    attacker_data: _XY | None = None,
    progress: bool = False,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> Simulation:
    """_XY-parallel SGD on ``recipe.n_workers`` simulated workers, ``setting.f`` of them Byzantine.

    One run of :func:`simulate_batch` (see there); ``on_step(step, grads)`` sees each round's
    submissions, shape (n_workers, d), before clipping. ``setting.attack`` is one of
    ``BYZANTINE_ATTACKS``.

    Taught in chapter 4.
    """
    check_model("model", model)
    single = None if on_step is None else (lambda step, grads: on_step(step, grads[0]))
    (run,) = simulate_batch(
        [model], x, y, settings=[setting], eval_data=eval_data, recipe=recipe, scale=scale,
        attacker_data=attacker_data, progress=progress, on_step=single,
    )  # fmt: skip
    return run
