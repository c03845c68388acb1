"""Gradient aggregation for data-parallel training with Byzantine workers: the rules, the attacks,
an in-process simulation, update-size limits and an append-only (hash-chained) log of updates.

Every aggregator takes ``grads`` of shape (n_workers, d) and returns one (d,) vector; none modifies
its input.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from statistics import NormalDist
from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from gdsec.validation import (
    check_choice,
    check_int,
    check_labels,
    check_model,
    check_number,
    check_unit_tensor,
)

__all__ = [
    "AGGREGATORS",
    "ATTACKS",
    "LogEntry",
    "Simulation",
    "aggregate",
    "alie_z",
    "append_update",
    "byzantine_gradients",
    "clip_updates",
    "coordinate_median",
    "krum",
    "max_tolerated",
    "mean",
    "payoff",
    "simulate",
    "submitter_scores",
    "time_aggregator",
    "trimmed_mean",
    "verify_log",
]

AGGREGATORS = ("mean", "coordinate_median", "trimmed_mean", "krum")
ATTACKS = ("none", "sign_flip", "noise", "scaled", "alie", "targeted")


def _check_grads(grads: object, *, min_workers: int = 1) -> torch.Tensor:
    """Return ``grads`` if it is a finite floating tensor of shape (n_workers, d)."""
    if not isinstance(grads, torch.Tensor) or not grads.is_floating_point():
        raise ValueError("grads must be a floating-point torch.Tensor of shape (n_workers, d)")
    if grads.dim() != 2 or grads.shape[1] == 0:
        raise ValueError(f"grads must have shape (n_workers, d) with d >= 1, got {tuple(grads.shape)}")
    if grads.shape[0] < min_workers:
        raise ValueError(f"grads must hold at least {min_workers} worker(s), got {grads.shape[0]}")
    if not torch.isfinite(grads).all():
        raise ValueError("grads must not contain NaN or Inf")
    return grads


def mean(grads: torch.Tensor) -> torch.Tensor:
    """Plain averaging: what data-parallel SGD (and DDP's all-reduce) does."""
    return _check_grads(grads).mean(dim=0)


def coordinate_median(grads: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median (Yin et al. 2018); with an even count, the mean of the two middle values."""
    n = _check_grads(grads).shape[0]
    ordered = grads.sort(dim=0).values
    return ordered[(n - 1) // 2 : n // 2 + 1].mean(dim=0)


def max_tolerated(aggregator: str, n_workers: int) -> int:
    """The largest number of Byzantine workers ``f`` the rule accepts for ``n_workers`` workers."""
    check_choice("aggregator", aggregator, AGGREGATORS)
    check_int("n_workers", n_workers, low=1)
    if aggregator == "mean":
        return 0
    if aggregator == "krum":
        return max(-1, (n_workers - 3) // 2)
    return (n_workers - 1) // 2


def _check_f(f: object, n: int, rule: str) -> int:
    """Return ``f`` if ``rule`` tolerates ``f`` Byzantine workers out of ``n``; else raise ``ValueError``."""
    limit = max_tolerated(rule, n)
    need = "n_workers > 2f + 2" if rule == "krum" else "n_workers > 2f"
    if isinstance(f, bool) or not isinstance(f, int) or not 0 <= f <= limit:
        allowed = f"an integer in [0, {limit}]" if limit >= 0 else "impossible"
        raise ValueError(f"f must be {allowed} for {rule} ({need}, n_workers = {n}), got {f!r}")
    return f


def trimmed_mean(grads: torch.Tensor, *, f: int) -> torch.Tensor:
    """Coordinate-wise trimmed mean: drop the ``f`` largest and ``f`` smallest values, average the rest."""
    n = _check_grads(grads).shape[0]
    f = _check_f(f, n, "trimmed_mean")
    ordered = grads.sort(dim=0).values
    return ordered[f : n - f].mean(dim=0)


def krum(grads: torch.Tensor, *, f: int) -> torch.Tensor:
    """Krum (Blanchard et al. 2017): the input closest (summed squared distance) to its n - f - 2 neighbours."""
    n = _check_grads(grads).shape[0]
    f = _check_f(f, n, "krum")
    distances = torch.cdist(grads.double(), grads.double()).pow(2)
    nearest = distances.sort(dim=1).values[:, 1 : n - f - 1]
    return grads[nearest.sum(dim=1).argmin()].clone()


def aggregate(name: str, grads: torch.Tensor, *, f: int = 0) -> torch.Tensor:
    """Apply the aggregator called ``name`` (one of ``AGGREGATORS``); ``f`` is ignored by mean and median."""
    check_choice("aggregator", name, AGGREGATORS)
    if name == "mean":
        return mean(grads)
    if name == "coordinate_median":
        return coordinate_median(grads)
    if name == "trimmed_mean":
        return trimmed_mean(grads, f=f)
    return krum(grads, f=f)


def time_aggregator(name: str, *, n_workers: int, d: int, f: int = 0, repeats: int = 20, seed: int = 0) -> float:
    """Median wall seconds of one call of aggregator ``name`` on random (n_workers, d) gradients."""
    check_int("d", d, low=1)
    check_int("repeats", repeats, low=1)
    grads = torch.randn(check_int("n_workers", n_workers, low=1), d, generator=torch.Generator().manual_seed(seed))
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        aggregate(name, grads, f=f)
        seconds.append(time.perf_counter() - start)
    return sorted(seconds)[len(seconds) // 2]


def clip_updates(grads: torch.Tensor, *, max_norm: float) -> torch.Tensor:
    """Each row rescaled to L2 norm at most ``max_norm`` (an update-size limit); a new tensor."""
    _check_grads(grads)
    check_number("max_norm", max_norm, low=0.0, low_open=True)
    norms = grads.norm(dim=1, keepdim=True)
    return grads * (max_norm / norms.clamp_min(1e-12)).clamp(max=1.0)


def alie_z(n_workers: int, f: int) -> float:
    """The 'a little is enough' shift z (Baruch et al. 2019) for n workers of which f are malicious."""
    check_int("n_workers", n_workers, low=2)
    check_int("f", f, low=1, high=n_workers - 1)
    supporters = n_workers // 2 + 1 - f
    return NormalDist().inv_cdf(min(max((n_workers - supporters) / n_workers, 0.5), 0.999))


def byzantine_gradients(
    honest: torch.Tensor, *, f: int, attack: str, scale: float | None = None, seed: int = 0
) -> torch.Tensor:
    """(f, d) malicious gradients crafted by omniscient attackers who see the honest ones (n - f, d).

    ``sign_flip``: -scale x the honest mean (scale 4); ``noise``: Gaussian noise of standard deviation
    scale (100) x the honest coordinates' spread; ``scaled``: scale (1000) x the honest mean; ``alie``:
    mean - z x std per coordinate with Baruch et al.'s z (scale overrides z); ``none``: honest copies.
    """
    _check_grads(honest)
    check_int("f", f, low=0)
    check_choice("attack", attack, tuple(a for a in ATTACKS if a != "targeted"))
    if f == 0:
        return honest[:0].clone()
    generator = torch.Generator().manual_seed(check_int("seed", seed, low=0))
    centre = honest.mean(dim=0)
    spread = honest.std(dim=0, unbiased=False) if honest.shape[0] > 1 else torch.zeros_like(centre)
    defaults = {"none": 1.0, "sign_flip": 4.0, "noise": 100.0, "scaled": 1000.0}
    factor = check_number("scale", scale, low=0.0) if scale is not None else defaults.get(attack, 0.0)
    if attack == "none":
        rows = honest[torch.arange(f) % honest.shape[0]].clone()
    elif attack == "sign_flip":
        rows = (-factor * centre).expand(f, -1).clone()
    elif attack == "noise":
        size = spread.mean().clamp_min(1e-8)
        rows = centre + factor * size * torch.randn(f, centre.numel(), generator=generator)
    elif attack == "scaled":
        rows = (factor * centre).expand(f, -1).clone()
    else:
        z = factor if scale is not None else alie_z(honest.shape[0] + f, f)
        rows = (centre - z * spread).expand(f, -1).clone()
    return rows


class Simulation(NamedTuple):
    """One simulated data-parallel run: test accuracy after each evaluation, where, and aggregation cost."""

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
    """
    from gdsec.env import progress as progress_bar

    check_model("model", model)
    check_unit_tensor("x", x, min_dim=2)
    check_labels("y", y, n=x.shape[0])
    if not isinstance(eval_data, tuple) or len(eval_data) != 2:
        raise ValueError("eval_data must be a tuple (x_test, y_test)")
    check_int("n_workers", n_workers, low=1, high=x.shape[0])
    check_int("f", f, low=0, high=n_workers - 1)
    check_choice("attack", attack, ATTACKS)
    check_choice("aggregator", aggregator, AGGREGATORS)
    agg_f = f if aggregator_f is None else aggregator_f
    if aggregator in ("trimmed_mean", "krum"):
        _check_f(agg_f, n_workers, aggregator)
    check_number("lr", lr, low=0.0, low_open=True)
    check_int("steps", steps, low=1)
    check_int("eval_every", eval_every, low=1)
    if max_norm is not None:
        check_number("max_norm", max_norm, low=0.0, low_open=True)
    if attack == "targeted" and attacker_data is None and f > 0:
        raise ValueError("attacker_data must be given (inputs, wanted labels) for attack='targeted'")
    generator = torch.Generator().manual_seed(check_int("seed", seed, low=0))
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


class LogEntry(NamedTuple):
    """One append-only log record: who submitted which update in which round, chained by hash."""

    index: int
    round_index: int
    submitter: str
    update: torch.Tensor
    previous: str
    digest: str


GENESIS = "0" * 64


def _digest(index: int, round_index: int, submitter: str, update: torch.Tensor, previous: str) -> str:
    payload = update.detach().to(torch.float64).contiguous().numpy().tobytes()
    header = f"{index}|{round_index}|{submitter}|{previous}|".encode()
    return hashlib.sha256(header + payload).hexdigest()


def append_update(
    log: Sequence[LogEntry], submitter: str, update: torch.Tensor, *, round_index: int = 0
) -> tuple[LogEntry, ...]:
    """A new log with ``update`` appended: its hash covers round, submitter, update and the previous hash."""
    check_int("round_index", round_index, low=0)
    if not isinstance(submitter, str) or not submitter:
        raise ValueError(f"submitter must be a non-empty string, got {submitter!r}")
    if not isinstance(update, torch.Tensor) or not update.is_floating_point():
        raise ValueError("update must be a floating-point torch.Tensor")
    previous = log[-1].digest if log else GENESIS
    frozen = update.detach().clone()
    digest = _digest(len(log), round_index, submitter, frozen, previous)
    entry = LogEntry(len(log), round_index, submitter, frozen, previous, digest)
    return (*log, entry)


def verify_log(log: Sequence[LogEntry]) -> int | None:
    """Index of the first record whose hash or link does not check out, or ``None`` if the chain is intact."""
    previous = GENESIS
    for position, entry in enumerate(log):
        if entry.index != position or entry.previous != previous:
            return position
        if entry.digest != _digest(entry.index, entry.round_index, entry.submitter, entry.update, entry.previous):
            return position
        previous = entry.digest
    return None


def submitter_scores(log: Sequence[LogEntry]) -> dict[str, float]:
    """Per submitter: mean cosine similarity of its updates to the coordinate median of their round.

    Honest contributors point roughly where the crowd points (high score); an attacker pushing its own
    direction scores low. Only the log is needed, so anyone holding it can recompute the audit.
    """
    if not log:
        raise ValueError("log must hold at least one entry")
    rounds: dict[int, list[LogEntry]] = {}
    for entry in log:
        rounds.setdefault(entry.round_index, []).append(entry)
    totals: dict[str, list[float]] = {}
    for entries in rounds.values():
        stacked = torch.stack([e.update.reshape(-1).double() for e in entries])
        centre = coordinate_median(stacked)
        cosine = nn.functional.cosine_similarity(stacked, centre.expand_as(stacked), dim=1)
        for entry, value in zip(entries, cosine.tolist(), strict=True):
            totals.setdefault(entry.submitter, []).append(value)
    return {name: sum(values) / len(values) for name, values in totals.items()}


def payoff(
    success_gain: float, *, claims: int, reward: float, submissions: int, fee: float, stake_lost: float = 0.0
) -> float:
    """Attacker profit: reward x claims it newly gets paid for, minus submission fees and any slashed stake."""
    check_number("success_gain", success_gain, low=-1.0, high=1.0)
    check_int("claims", claims, low=0)
    check_number("reward", reward, low=0.0)
    check_int("submissions", submissions, low=0)
    check_number("fee", fee, low=0.0)
    check_number("stake_lost", stake_lost, low=0.0)
    return success_gain * claims * reward - submissions * fee - stake_lost
