"""An append-only, hash-chained log of submitted updates, and an audit anyone holding it can run."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from gdsec.aggregation.rules import coordinate_median
from gdsec.validation import check_int

__all__ = ["GENESIS", "LogEntry", "append_update", "submitter_scores", "verify_log"]

#: The ``previous`` digest of a log's first record.
GENESIS = "0" * 64


class LogEntry(NamedTuple):
    """One append-only log record: who submitted which update in which round, chained by hash.

    Taught in chapter 4.
    """

    index: int
    round_index: int
    submitter: str
    update: torch.Tensor
    previous: str
    digest: str


def _digest(index: int, round_index: int, submitter: str, update: torch.Tensor, previous: str) -> str:
    payload = update.detach().to(torch.float64).contiguous().numpy().tobytes()
    header = f"{index}|{round_index}|{submitter}|{previous}|".encode()
    return hashlib.sha256(header + payload).hexdigest()


def append_update(
    log: Sequence[LogEntry], submitter: str, update: torch.Tensor, *, round_index: int = 0
) -> tuple[LogEntry, ...]:
    """A new log with ``update`` appended: its hash covers round, submitter, update and the previous hash.

    Taught in chapter 4.
    """
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
    """Index of the first record whose hash or link does not check out, or ``None`` if the chain is intact.

    Taught in chapter 4.
    """
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

    Taught in chapter 4.
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
