"""A hash-chained log of submitted updates, the anchors that make it tamper-evident, and an audit.

A hash chain alone proves nothing: whoever holds the log can rewrite a record and re-append every
later one with :func:`append_update`, and :func:`verify_log` still passes. Tamper evidence needs the
head digest of each round published or signed outside the log (:func:`head`), and the log checked
against those anchors. Who submitted a record is only as trustworthy as whoever writes the log;
attribution needs each submitter's own signature, which this log does not carry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from gdsec.aggregation.rules import coordinate_median
from gdsec.validation import check_int

__all__ = [
    "GENESIS",
    "Anchor",
    "LogEntry",
    "append_update",
    "head",
    "submitter_scores",
    "verify_log",
]

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


class Anchor(NamedTuple):
    """A published head: the index of a log's last record and its digest, kept outside the log.

    Taught in chapter 4.
    """

    index: int
    digest: str


def _digest(
    index: int, round_index: int, submitter: str, update: torch.Tensor, previous: str
) -> str:
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


def head(log: Sequence[LogEntry]) -> Anchor:
    """The anchor to publish (or sign) outside the log after a round: its last record's index and digest.

    Taught in chapter 4.
    """
    if not log:
        raise ValueError("log must hold at least one entry to have a head")
    return Anchor(len(log) - 1, log[-1].digest)


def _check_anchors(anchors: object) -> list[Anchor]:
    """``anchors`` as a list of ``Anchor`` sorted by index, or ``ValueError`` naming ``anchors``."""
    if isinstance(anchors, Anchor) or not isinstance(anchors, Sequence) or isinstance(anchors, str):
        raise ValueError("anchors must be a sequence of Anchor (index, digest), e.g. [head(log)]")
    for anchor in anchors:
        if not isinstance(anchor, Anchor) or not isinstance(anchor.index, int) or anchor.index < 0:
            raise ValueError(f"anchors must hold Anchor(index >= 0, digest) values, got {anchor!r}")
    return sorted(anchors, key=lambda a: a.index)


def verify_log(log: Sequence[LogEntry], *, anchors: Sequence[Anchor] = ()) -> int | None:
    """Index of the first record that fails its hash, its link or an anchor; ``None`` if all check out.

    Without ``anchors`` only the chain's internal consistency is checked, which a rewrite followed by
    re-appending every later record passes. With ``anchors`` (heads published outside the log, see
    :func:`head`), the record at each anchored index must carry the anchored digest; the first that
    does not is returned (the change lies at or before it, after the previous anchor that matched), and
    a log shorter than an anchor fails at its length (records were dropped).

    Taught in chapter 4.
    """
    checked = _check_anchors(anchors)
    previous = GENESIS
    for position, entry in enumerate(log):
        if entry.index != position or entry.previous != previous:
            return position
        if entry.digest != _digest(
            entry.index, entry.round_index, entry.submitter, entry.update, entry.previous
        ):
            return position
        previous = entry.digest
    for anchor in checked:
        if anchor.index >= len(log):
            return len(log)
        if log[anchor.index].digest != anchor.digest:
            return anchor.index
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
