"""Gradient aggregation for data-parallel training with Byzantine workers.

* :mod:`~gdsec.aggregation.rules`: the mean, coordinate-wise median, trimmed mean and Krum, how many
  attackers each tolerates, their cost, and update-size limits;
* :mod:`~gdsec.aggregation.byzantine`: the gradients Byzantine workers send;
* :mod:`~gdsec.aggregation.simulate`: an in-process data-parallel training loop;
* :mod:`~gdsec.aggregation.ledger`: an append-only, hash-chained log of updates and its audit;
* :mod:`~gdsec.aggregation.economics`: what an attack pays in open-contribution training;
* :mod:`~gdsec.aggregation.experiments`: chapter 4's experiment (import it by name).

Every aggregator takes ``grads`` of shape (n_workers, d) and returns one (d,) vector; none modifies
its input.
"""

from gdsec.aggregation.byzantine import (
    BYZANTINE_ATTACKS,
    CRAFTED_ATTACKS,
    alie_z,
    byzantine_gradients,
)
from gdsec.aggregation.economics import payoff
from gdsec.aggregation.ledger import GENESIS, LogEntry, append_update, submitter_scores, verify_log
from gdsec.aggregation.rules import (
    AGGREGATORS,
    aggregate,
    check_f,
    check_grads,
    clip_updates,
    coordinate_median,
    krum,
    max_tolerated,
    mean,
    time_aggregator,
    trimmed_mean,
)
from gdsec.aggregation.simulate import Simulation, simulate

__all__ = [
    "AGGREGATORS",
    "BYZANTINE_ATTACKS",
    "CRAFTED_ATTACKS",
    "GENESIS",
    "LogEntry",
    "Simulation",
    "aggregate",
    "alie_z",
    "append_update",
    "byzantine_gradients",
    "check_f",
    "check_grads",
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
