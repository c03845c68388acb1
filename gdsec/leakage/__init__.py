"""Gradient leakage: rebuild a client's training inputs from the gradient it shares, and the defences.

Split by responsibility: :mod:`gdsec.leakage.gradients` (what a client shares),
:mod:`gdsec.leakage.reconstruction` (DLG and iDLG label inference, matching reconstructions to
originals) and :mod:`gdsec.leakage.defences` (gradient noise, pruning, DP-SGD via Opacus). Every
public name is importable from ``gdsec.leakage``.
"""

from gdsec.leakage.defences import (
    DPTraining,
    add_gradient_noise,
    dp_epsilon,
    dp_gradients,
    dp_train,
    prune_gradients,
)
from gdsec.leakage.gradients import client_gradients
from gdsec.leakage.reconstruction import (
    DISTANCES,
    dlg,
    gradient_distance,
    infer_labels,
    match_reconstructions,
    reconstruction_errors,
)

__all__ = [
    "DISTANCES",
    "DPTraining",
    "add_gradient_noise",
    "client_gradients",
    "dlg",
    "dp_epsilon",
    "dp_gradients",
    "dp_train",
    "gradient_distance",
    "infer_labels",
    "match_reconstructions",
    "prune_gradients",
    "reconstruction_errors",
]
