"""Robust aggregation on a real engine: a ``torch.distributed`` DDP communication hook (gloo, CPU).

DDP normally all-reduces (averages) each gradient bucket. :func:`robust_hook` instead all-gathers
every worker's bucket and combines them with a ``gdsec.aggregation`` rule, so one Byzantine process
cannot drag the shared model where it likes. :func:`run_ddp` spawns a few local processes on
127.0.0.1 to train a digits model that way, optionally with a malicious rank.
"""

import datetime
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from gdsec.aggregation import AGGREGATORS, aggregate, check_f
from gdsec.data import load_digits
from gdsec.models import logistic_regression
from gdsec.streams import random_stream
from gdsec.validation import check_choice, check_int, check_number, check_seed

__all__ = ["HookState", "free_port", "robust_hook", "run_ddp"]


@dataclass
class HookState:
    """What the hook needs: the aggregation rule, ``f`` it tolerates, and (for a demo) this rank's attack.

    Taught in chapter 4.
    """

    aggregator: str = "coordinate_median"
    f: int = 1
    malicious: bool = False
    attack_scale: float = -50.0


def robust_hook(state: HookState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook: all-gather the bucket from every rank and aggregate it robustly.

    The rule sees one bucket at a time, not the whole gradient. Coordinate-wise rules (median, trimmed
    mean) are unaffected, but Krum then picks a worker per bucket, possibly a different one in each:
    once a model spans several buckets that is not Krum on the full gradient. The all-gather is also
    what robustness costs on the wire: each rank receives every other rank's bucket, (n - 1) x its
    size, where the ring all-reduce behind DDP's mean moves about 2 x its size whatever n is.

    A malicious rank (``state.malicious``) first replaces its own gradients by ``attack_scale`` times
    themselves: what a compromised worker running modified code would send.

    Taught in chapter 4.
    """
    local = bucket.buffer()
    if state.malicious:
        local = local * state.attack_scale
    world = dist.get_world_size()
    gathered = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(gathered, local.contiguous())
    combined = aggregate(state.aggregator, torch.stack(gathered), f=state.f)
    future: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    future.set_result(combined.to(local.dtype))
    return future


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now.

    Used in chapter 4.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class _Job:
    """What every DDP process of one :func:`run_ddp` call shares (picklable for ``spawn``)."""

    world: int
    port: int
    tensors: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
    aggregators: tuple[str, ...]
    f: int
    malicious_rank: int | None
    steps: int
    lr: float
    out_dir: str
    timeout_s: float
    seed: int


def _worker(rank: int, job: _Job) -> None:
    """One DDP process: for each aggregator, train logistic regression on its shard; write test accuracies."""
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(job.port)
    dist.init_process_group(
        "gloo", rank=rank, world_size=job.world, timeout=datetime.timedelta(seconds=job.timeout_s)
    )
    try:
        x_train, y_train, x_test, y_test = job.tensors
        shard = torch.arange(rank, x_train.shape[0], job.world)
        results = []
        for aggregator in job.aggregators:
            model = DistributedDataParallel(logistic_regression(64, 10, seed=job.seed))
            state = HookState(aggregator=aggregator, f=job.f, malicious=rank == job.malicious_rank)
            model.register_comm_hook(state, robust_hook)
            optimizer = torch.optim.SGD(model.parameters(), lr=job.lr)
            generator = random_stream(job.seed, f"distributed.worker{rank}")
            for _ in range(job.steps):
                index = shard[torch.randint(len(shard), (32,), generator=generator)]
                optimizer.zero_grad(set_to_none=True)
                loss = torch.nn.functional.cross_entropy(model(x_train[index]), y_train[index])
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                logits = model.module(x_test)
            finite = bool(torch.isfinite(logits).all())
            results.append((logits.argmax(1) == y_test).float().mean().item() if finite else 0.0)
        Path(job.out_dir, f"rank{rank}.txt").write_text(" ".join(str(r) for r in results))
    finally:
        dist.destroy_process_group()


def run_ddp(
    *,
    aggregators: tuple[str, ...] = ("mean", "coordinate_median"),
    world_size: int = 4,
    f: int = 1,
    malicious_rank: int | None = 0,
    steps: int = 60,
    lr: float = 0.5,
    timeout: float = 90.0,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Train on the digits with ``world_size`` local gloo processes and the hook, once per aggregator.

    Returns, per aggregator, each rank's test accuracy (0 if the weights stopped being finite);
    ``"mean"`` reproduces plain DDP averaging. Processes still running after ``timeout`` seconds are
    terminated and a ``TimeoutError`` is raised. Every rank starts from the same weights (seeded by
    ``seed``) and rank ``r`` draws its mini-batches from its own stream of ``seed``.

    Taught in chapter 4.
    """
    check_int("world_size", world_size, low=2, high=16)
    if not aggregators:
        raise ValueError("aggregators must name at least one aggregation rule")
    for aggregator in aggregators:
        check_choice("aggregators", aggregator, AGGREGATORS)
        if aggregator in ("trimmed_mean", "krum"):
            check_f(f, world_size, aggregator)
    if malicious_rank is not None:
        check_int("malicious_rank", malicious_rank, low=0, high=world_size - 1)
    check_int("steps", steps, low=1)
    check_number("lr", lr, low=0.0, low_open=True)
    check_number("timeout", timeout, low=1.0)
    check_seed(seed)
    split = load_digits()
    tensors = (split.x_train, split.y_train, split.x_test, split.y_test)
    context = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as out_dir:
        job = _Job(world_size, free_port(), tensors, tuple(aggregators), f, malicious_rank, steps, lr,
                   out_dir, timeout, seed)  # fmt: skip
        processes = [
            context.Process(target=_worker, args=(rank, job), daemon=True)
            for rank in range(world_size)
        ]
        for process in processes:
            process.start()
        deadline = time.monotonic() + timeout
        try:
            for process in processes:
                process.join(max(0.1, deadline - time.monotonic()))
            if any(p.is_alive() for p in processes):
                raise TimeoutError(f"DDP run did not finish within {timeout} s")
            failed = [rank for rank, p in enumerate(processes) if p.exitcode != 0]
            if failed:
                raise RuntimeError(f"DDP ranks {failed} exited with an error")
            rows = [Path(out_dir, f"rank{r}.txt").read_text().split() for r in range(world_size)]
            return {name: [float(row[i]) for row in rows] for i, name in enumerate(aggregators)}
        finally:
            for process in processes:
                if process.is_alive():
                    process.terminate()
                    process.join(5)
