"""Gradient aggregation for data-parallel training with Byzantine workers.

* :mod:`~gdsec.aggregation.rules`: the mean, coordinate-wise median, trimmed mean and Krum, how many
  attackers each tolerates, their cost, and update-size limits;
* :mod:`~gdsec.aggregation.byzantine`: the gradients Byzantine workers send;
* :mod:`~gdsec.aggregation.settings`: what one simulated run is (:class:`Setting`) and how it trains
  (:class:`SimulationRecipe`);
* :mod:`~gdsec.aggregation.simulation`: an in-process data-parallel training loop, many runs at once;
* :mod:`~gdsec.aggregation.ledger`: a hash-chained log of updates, the published heads that anchor it, and its audit;
* :mod:`~gdsec.aggregation.economics`: what an attack pays in open-contribution training;
* :mod:`~gdsec.aggregation.experiments`: chapter 4's experiment (import it by name).

Every aggregator takes ``grads`` of shape (n_workers, d) and returns one (d,) vector; none modifies
its input.
"""

from gdsec.aggregation.byzantine import (
    BYZANTINE_ATTACKS,
    CRAFTED_ATTACKS,
    alie_z,
)
from gdsec.aggregation.economics import payoff
from gdsec.aggregation.ledger import (
    GENESIS,
    Anchor,
    LogEntry,
    append_update,
    head,
    submitter_scores,
    verify_log,
)
from gdsec.aggregation.rules import (
    AGGREGATORS,
    aggregate,
    check_f,
    check_worker_grads,
    clip_updates,
    coordinate_median,
    krum,
    max_tolerated,
    mean,
    time_aggregator,
)
from gdsec.aggregation.settings import Setting, SimulationRecipe
from gdsec.aggregation.simulation import Simulation, simulate, simulate_batch

__all__ = [
    "AGGREGATORS",
    "Anchor",
    "BYZANTINE_ATTACKS",
    "CRAFTED_ATTACKS",
    "GENESIS",
    "LogEntry",
    "Setting",
    "SimulationRecipe",
    "Simulation",
    "aggregate",
    "alie_z",
    "append_update",
    "check_f",
    "check_worker_grads",
    "head",
    "clip_updates",
    "coordinate_median",
    "krum",
    "max_tolerated",
    "mean",
    "payoff",
    "simulate",
    "simulate_batch",
    "submitter_scores",
    "time_aggregator",
    "verify_log",
]
