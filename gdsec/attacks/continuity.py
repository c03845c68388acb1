"""Do the scores follow the decisions? The boundary-continuity check and the flag texts of the
consistency checks of :mod:`gdsec.attacks.checks` (split from it for the 300-line rule).

:func:`boundary_jump` bisects between rows predicted differently: a continuous model's scale-free
margin is about 0 where its decision changes; a wrapper whose decisions are made elsewhere than its
scores (``5 * onehot(argmax f) + g`` with a smooth, honest-looking ``g``: autograd agrees with finite
differences and the margin moves) jumps there. :func:`consistency_flags` turns the three statistics
into the flags :func:`gdsec.attacks.evaluate` and the audit report.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gdsec.attacks._core import checked_logits, margin
from gdsec.attacks.checks import (
    FLAT_TOL,
    INCONSISTENT_TOL,
    flat_output,
    gradient_inconsistency,
    logit_scale,
)
from gdsec.streams import random_stream
from gdsec.validation import check_batch, check_int, check_model, check_number, check_seed

__all__ = ["JUMP_TOL", "STEEP_TOL", "boundary_jump", "boundary_steepness", "consistency_flags"]

#: Median scale-free margin at the bisected decision boundary (:func:`boundary_jump`) above which
#: the scores jump where the decisions change. Measured on 100 test rows, 20 halvings: honest
#: digits MLP, CNN, two-class, breast-cancer tabular, x1000 and float64 copies at most 3.4e-6
#: (medians 6e-7-1.5e-6); ``5 * onehot(argmax f) + w * g`` with g the decoys' mean logits 0.82
#: (w = 0.1), 0.24 (w = 1), with g = -f 1.0, a shuffled-label model 1.05; the review's decoy 1.0;
#: quantised 0.056, randomised 0.10.
JUMP_TOL = 1e-3

#: Median :func:`boundary_steepness` above which the scores rise in a narrow band at the boundary
#: (a continuous but saturating wrapper). Measured on 100 test rows at jitter 0.1: honest digits
#: MLP 0.63 (x1000 and float64 the same), a 128-unit MLP 0.66, CNN 0.86, two-class 0.45,
#: breast-cancer tabular 0.48 (90th percentiles at most 2.9); ``5 * softmax(f / T) - 0.1 f`` 280
#: (T = 0.01), 29 (T = 0.1), 8.2 (T = 0.3), 2.4 (T = 1, not flagged); jumps 2e5-7e5.
STEEP_TOL = 5.0


def boundary_jump(
    model: nn.Module, x: torch.Tensor, *, steps: int = 20, jitter: float = 0.0, seed: int = 0
) -> torch.Tensor:
    """Per pair of rows (shaped (N,)): the scale-free margin where the decision changes between them.

    Each row is first moved to a random (seeded) corner of its L-infinity ball of radius ``jitter``
    (clipped to [0, 1]; the audit passes its ``eps``, so the probes sit as far from the trusted rows
    as an attack's points and a wrapper cannot tell them apart by distance or by lying on a segment
    between two trusted rows). Row ``i`` is paired with the first row after it (cyclically)
    predicted otherwise; the segment between them is bisected ``steps`` times to the two points
    closest to the change, and the mean of their margins (each point's own prediction,
    ``z_c - max_{k != c} z_k``) over :func:`gdsec.attacks.checks.logit_scale` of the rows' logits
    is returned. A continuous model's margin is 0 at its boundary, so the statistic is about 0 (gap
    ``2**-steps``); scores whose decisions are decided elsewhere (``5 * onehot(argmax f) + g``) jump
    there, of order 1. NaN for rows with no partner. The model runs in the mode it is in.
    Used in chapters 8 and 10.
    """
    x, z, z_lo, z_hi, lo, hi, paired = _bisect(model, x, steps, jitter, seed)
    both = (margin(z_lo, z_lo.argmax(1)) + margin(z_hi, z_hi.argmax(1))) / 2
    out = both / logit_scale(z)
    return torch.where(paired, out, torch.full_like(out, math.nan))


def boundary_steepness(
    model: nn.Module, x: torch.Tensor, *, steps: int = 20, jitter: float = 0.0, seed: int = 0
) -> torch.Tensor:
    """Per pair of rows (shaped (N,)): how much steeper the margin is at the boundary than on average.

    On the segments of :func:`boundary_jump` (same arguments), the margin's slope over the last gap
    before the change, ``m(lo) / (hi - lo)``, over its mean slope from the row to there,
    ``m(0) / lo`` (scale-free). About 1 for an honest model (ReLU networks are piecewise linear:
    medians 0.45-0.86 on the digits MLPs, CNN, two-class and tabular models), large for scores that
    rise in a narrow band around the boundary (``5 * softmax(f / T) - 0.1 f``: 29 at T = 0.1, 8 at
    T = 0.3) and for jumps. NaN for rows with no partner. Used in chapters 8 and 10.
    """
    x, z, z_lo, _, lo, hi, paired = _bisect(model, x, steps, jitter, seed)
    predicted = z.argmax(1)
    tiny = torch.finfo(lo.dtype).tiny
    near = margin(z_lo, predicted).abs().to(lo.dtype) / (hi - lo).clamp_min(tiny)
    mean = margin(z, predicted).abs().to(lo.dtype) / lo.clamp_min(hi - lo).clamp_min(tiny)
    out = near / mean.clamp_min(tiny)
    return torch.where(paired, out, torch.full_like(out, math.nan))


def _bisect(
    model: nn.Module, x: torch.Tensor, steps: int, jitter: float, seed: int
) -> tuple[torch.Tensor, ...]:
    """The jittered rows, their logits, the logits at both ends of the last gap, its ends, paired."""
    check_model("model", model)
    x = check_batch("x", x, unit=True).detach()
    steps = check_int("steps", steps, low=1)
    jitter = check_number("jitter", jitter, low=0.0, high=1.0)
    generator = random_stream(check_seed(seed), "attacks.continuity.boundary_jump")
    signs = torch.randint(0, 2, x.shape, generator=generator, device=generator.device)
    signs = signs.to(device=x.device, dtype=x.dtype)
    x = (x + jitter * (2 * signs - 1)).clamp(0.0, 1.0)
    n = len(x)
    with torch.no_grad():
        clean = checked_logits(model, x)
        predicted = clean.argmax(1)
        lo = torch.zeros(n, device=x.device, dtype=x.dtype)
        hi = torch.ones_like(lo)
        if n < 2:
            return x, clean, clean, clean, lo, hi, torch.zeros_like(lo, dtype=torch.bool)
        shift = torch.arange(1, n, device=x.device).reshape(-1, 1)
        index = (torch.arange(n, device=x.device) + shift) % n  # (n-1, n) candidates per row
        differs = predicted[index] != predicted
        paired = differs.any(0)
        partner = index.gather(0, differs.to(torch.int64).argmax(0, keepdim=True)).squeeze(0)
        shape = (-1, *([1] * (x.dim() - 1)))
        far = x[partner]

        def at(t: torch.Tensor) -> torch.Tensor:
            return x + t.reshape(shape) * (far - x)

        for _ in range(steps):
            mid = (lo + hi) / 2
            same = checked_logits(model, at(mid)).argmax(1) == predicted
            lo, hi = torch.where(same, mid, lo), torch.where(same, hi, mid)
        z_lo, z_hi = checked_logits(model, at(lo)), checked_logits(model, at(hi))
    return x, clean, z_lo, z_hi, lo, hi, paired


def consistency_flags(
    model: nn.Module, probe: torch.Tensor, eps: float, *, seed: int = 0
) -> list[str]:
    """The ``inconsistent-gradient``, ``flat-output`` and ``discontinuous-scores`` flags (the texts
    :func:`gdsec.attacks.evaluate` reports) for a deterministic ``model`` on the rows ``probe``, at
    :data:`INCONSISTENT_TOL`, :data:`FLAT_TOL` and :data:`JUMP_TOL`. Used in chapters 8 and 10.
    """
    flags = []
    disagreement = gradient_inconsistency(model, probe, seed=seed)
    median = float(disagreement.median())
    if median > INCONSISTENT_TOL:
        rows = int((disagreement > INCONSISTENT_TOL).sum())
        flags.append(
            f"inconsistent-gradient: on {rows} of {len(probe)} probed rows autograd's directional "
            f"derivative disagrees with a finite difference of the forward pass (median relative "
            f"disagreement {median:.2f}); the backward pass is not the forward pass's (a custom, "
            "decoy or non-differentiable gradient); read the gradient-free and decision-based results"
        )
    spread = float(flat_output(model, probe, eps, seed=seed).median()) if eps > 0 else math.inf
    if spread < FLAT_TOL:
        flags.append(
            f"flat-output: the scale-free margin barely moves over random points of the eps-ball "
            f"(median spread {spread:.2g}, below {FLAT_TOL:g}); a score-based attack has nothing to "
            "descend, read the decision-based result"
        )
    settings = dict(jitter=min(eps, 1.0), seed=seed)
    jumps = boundary_jump(model, probe, **settings)
    steep = boundary_steepness(model, probe, **settings)
    jump = float(jumps.nanmedian()) if not jumps.isnan().all() else 0.0
    ratio = float(steep.nanmedian()) if not steep.isnan().all() else 0.0
    if jump > JUMP_TOL or ratio > STEEP_TOL:
        flags.append(
            f"discontinuous-scores: where the decision changes between two rows the scale-free margin "
            f"is {jump:.2g} (above {JUMP_TOL:g} is a jump; a continuous model's is about 0) and "
            f"{ratio:.2g} times steeper than on the way there (above {STEEP_TOL:g} is a narrow "
            f"band), medians over {int((~jumps.isnan()).sum())} bisected pairs: the decisions are "
            "made elsewhere than the scores say; read the decision-based result"
        )
    return flags
