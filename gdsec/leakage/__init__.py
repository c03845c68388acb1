"""Gradient leakage: rebuild a client's training inputs from the gradient it shares, and the defences.

Split by responsibility: :mod:`gdsec.leakage.gradients` (what a client shares),
:mod:`gdsec.leakage.reconstruction` (DLG and iDLG label inference, matching reconstructions to
originals), :mod:`gdsec.leakage.metrics` (PSNR and SSIM of a reconstruction) and
:mod:`gdsec.leakage.defences` (gradient noise, pruning, DP-SGD via Opacus). Every
public name is importable from ``gdsec.leakage``.
"""

from gdsec.leakage.defences import (
    PRUNE_SCOPES,
    DPTraining,
    add_gradient_noise,
    dp_epsilon,
    dp_gradients,
    dp_train,
    prune_gradients,
)
from gdsec.leakage.gradients import client_gradients
from gdsec.leakage.metrics import Quality, psnr, reconstruction_quality, ssim
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
    "PRUNE_SCOPES",
    "DPTraining",
    "Quality",
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
    "psnr",
    "reconstruction_errors",
    "reconstruction_quality",
    "ssim",
]
