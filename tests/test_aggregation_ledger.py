"""Tests for gdsec.aggregation.ledger: the hash-chained log and the audit anyone holding it can run."""

from __future__ import annotations

import pytest
import torch

from gdsec import aggregation as ag


def test_hash_chain_detects_tampering() -> None:
    log: tuple = ()
    updates = [torch.full((4,), float(i)) for i in range(5)]
    for i, update in enumerate(updates):
        log = ag.append_update(log, f"w{i % 2}", update, round_index=i // 2)
    updates[0] += 100  # the caller's tensor changing later does not change the log
    assert ag.verify_log(log) is None
    assert [e.index for e in log] == list(range(5)) and log[1].previous == log[0].digest
    forged = list(log)
    forged[2] = forged[2]._replace(update=torch.zeros(4))
    assert ag.verify_log(forged) == 2
    dropped = log[:1] + log[2:]
    assert ag.verify_log(dropped) == 1
    renamed = list(log)
    renamed[3] = renamed[3]._replace(submitter="w9")
    assert ag.verify_log(renamed) == 3
    with pytest.raises(ValueError, match="submitter"):
        ag.append_update(log, "", torch.zeros(4))
    with pytest.raises(ValueError, match="update"):
        ag.append_update(log, "w1", [1.0])


def _log(rounds: int = 3, per_round: int = 4) -> tuple[tuple, list]:
    log: tuple = ()
    heads = []
    for r in range(rounds):
        for w in range(per_round):
            log = ag.append_update(log, f"w{w}", torch.full((3,), float(10 * r + w)), round_index=r)
        heads.append(ag.head(log))
    return log, heads


def _rehash(log: tuple, position: int, update: torch.Tensor) -> tuple:
    """What anyone holding the log can do: change one record and re-append every later one."""
    out = log[:position]
    out = ag.append_update(
        out, log[position].submitter, update, round_index=log[position].round_index
    )
    for entry in log[position + 1 :]:
        out = ag.append_update(out, entry.submitter, entry.update, round_index=entry.round_index)
    return out


def test_a_rehashed_rewrite_passes_the_chain_but_not_the_published_heads() -> None:
    log, heads = _log()
    assert heads[0] == ag.Anchor(3, log[3].digest) and ag.verify_log(log, anchors=heads) is None
    rewritten = _rehash(log, 5, torch.zeros(3))
    assert ag.verify_log(rewritten) is None, "a consistent rewrite passes the bare chain check"
    assert ag.verify_log(rewritten, anchors=heads) == 7, (
        "the first head after record 5 (round 1) fails"
    )
    assert ag.verify_log(rewritten, anchors=heads[:1]) is None, (
        "heads published before the change cannot see it"
    )
    assert ag.verify_log(rewritten, anchors=list(reversed(heads))) == 7, "anchors in any order"
    assert ag.verify_log(log[:6], anchors=heads) == 6, "a truncated log fails at its length"
    assert ag.verify_log(log[:8], anchors=heads[:2]) is None


def test_anchors_and_head_reject_bad_arguments() -> None:
    log, heads = _log(1)
    with pytest.raises(ValueError, match="anchors"):
        ag.verify_log(log, anchors=heads[0])
    with pytest.raises(ValueError, match="anchors"):
        ag.verify_log(log, anchors=[(3, log[3].digest)])
    with pytest.raises(ValueError, match="anchors"):
        ag.verify_log(log, anchors=[ag.Anchor(-1, "x")])
    with pytest.raises(ValueError, match="log"):
        ag.head(())


def test_submitter_scores_single_out_the_odd_one() -> None:
    generator = torch.Generator().manual_seed(0)
    log: tuple = ()
    for round_index in range(5):
        direction = torch.randn(20, generator=generator)
        for worker in range(6):
            update = direction + 0.3 * torch.randn(20, generator=generator)
            log = ag.append_update(log, f"honest{worker}", update, round_index=round_index)
        log = ag.append_update(log, "attacker", -5 * direction, round_index=round_index)
    scores = ag.submitter_scores(log)
    assert scores["attacker"] < 0 < min(v for k, v in scores.items() if k != "attacker")
    with pytest.raises(ValueError, match="log"):
        ag.submitter_scores(())
