"""Several seeds at the price of one: train a small model's seeds together, and summarise what they measure.

``training.train_seeds`` trains one copy per seed as one batched model, each copy exactly as
``gdsec.train.train`` would with that seed; ``stats`` summarises per-seed results (mean, spread,
Wilson intervals) in the form the chapters glue; ``stacked`` is the batched model underneath.
"""

from gdsec.seeds.stats import Summary, format_mean_spread, summarise, wilson_interval
from gdsec.seeds.training import check_seeds, train_seeds

__all__ = [
    "Summary",
    "check_seeds",
    "format_mean_spread",
    "summarise",
    "train_seeds",
    "wilson_interval",
]
