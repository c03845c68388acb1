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
