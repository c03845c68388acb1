"""FAB, the fast adaptive boundary attack (Croce & Hein 2020): a minimum-norm attack.

Each step linearises the model around the current point and projects onto the linearised
decision boundary, both from the current point and from the original input, inside the [0, 1]
box; the two projections are mixed with a weight (at most ``alpha_max``) that pulls towards the
original, so the iterate slides along the boundary towards the closest adversarial point. A step
that crosses the boundary is kept when it is the smallest seen and is then pulled back towards
the original by ``beta``. The targeted version (FAB-T, AutoAttack's choice) uses one gradient per
step, of ``z_t - z_y`` for each of the top-9 other classes in turn.

The projections solve ``min ||d|| s.t. w . (p + d) = b, p + d in [0, 1]`` exactly: for L-infinity
every useful coordinate moves by the same amount up to its room in the box (a sort finds the
amount), for L2 the solution is ``clip(lambda * w)`` (bisection on ``lambda``). When the box
cannot reach the hyperplane the projection goes to the box corner closest to it, as in the paper.
"""

from __future__ import annotations

import torch
from torch import nn

from gdsec.attacks._core import (
    TINY,
    attack_contract,
    checked_logits,
    per_row,
    row_norm,
    runner_up_targets,
)
from gdsec.attacks.minimal import gradient_or_zero
from gdsec.attacks.settings import flag, positive, positive_int, seed_value
from gdsec.streams import random_stream
from gdsec.validation import check_norm, check_number

__all__ = ["fab", "project_on_hyperplane"]

_BISECTIONS = 40
#: FAB-T runs several targets in one batch while their rows together stay within this many.
_GROUP_ROWS = 256


def _linf_projection(p: torch.Tensor, w: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Smallest-L-inf ``d`` with ``w . d = c`` and ``p + d`` in [0, 1] (rows of (N, d)); the box corner if none."""
    direction = torch.sign(w) * torch.sign(c)[:, None]
    room = torch.where(direction > 0, 1 - p, p) * (direction != 0)
    weight = w.abs() * (direction != 0)
    room_sorted, order = room.sort(dim=1)
    weight_sorted = weight.gather(1, order)
    # gain(delta) = sum_i weight_i * min(delta, room_i), evaluated at each breakpoint delta = room_(j)
    full = (weight_sorted * room_sorted).cumsum(1)
    left = weight_sorted.sum(1, keepdim=True) - weight_sorted.cumsum(1)
    gain = full + room_sorted * left
    need = c.abs()[:, None]
    j = torch.searchsorted(gain.contiguous(), need.contiguous()).clamp(max=p.shape[1] - 1)
    before_full = torch.where(j > 0, full.gather(1, (j - 1).clamp(min=0)), torch.zeros_like(need))
    before_left = torch.where(
        j > 0, left.gather(1, (j - 1).clamp(min=0)), weight_sorted.sum(1, keepdim=True)
    )
    delta = ((need - before_full) / (before_left + TINY)).clamp(min=0.0)
    delta = torch.minimum(delta, room_sorted[:, -1:])  # infeasible: every coordinate to its bound
    return direction * torch.minimum(delta, room)


def _l2_projection(p: torch.Tensor, w: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Smallest-L2 ``d`` with ``w . d = c`` and ``p + d`` in [0, 1]: ``clip(lambda * s * w)``, lambda by bisection."""
    v = w * torch.sign(c)[:, None]
    low_d, high_d = -p, 1 - p
    saturate = torch.where(
        v > 0, high_d / (v + TINY), torch.where(v < 0, low_d / (v - TINY), torch.zeros_like(v))
    )
    lo = torch.zeros_like(c)
    hi = saturate.amax(1)
    need = c.abs()
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        reached = (v * torch.clamp(mid[:, None] * v, low_d, high_d)).sum(1) >= need
        hi, lo = torch.where(reached, mid, hi), torch.where(reached, lo, mid)
    return torch.clamp(hi[:, None] * v, low_d, high_d)


def project_on_hyperplane(
    p: torch.Tensor, w: torch.Tensor, b: torch.Tensor, *, norm: str = "inf"
) -> torch.Tensor:
    """Per row of ``p`` (N, d), the smallest step ``d`` (L-inf or L2) with ``w . (p + d) = b`` and ``p + d`` in [0, 1].

    Rows whose hyperplane the box cannot reach get the step to the box corner nearest to it.
    Used in chapter 8.
    """
    norm = check_norm("norm", norm)
    c = b - (w * p).sum(1)
    step = _linf_projection(p, w, c) if norm == "inf" else _l2_projection(p, w, c)
    return step * (c != 0)[:, None]


def _boundary(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, norm: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(f, grad f) per row, flattened: ``f = z_t - z_y`` for a target, else for the nearest linearised class."""
    rows = torch.arange(x.shape[0], device=x.device)
    with torch.enable_grad():
        probe = x.detach().requires_grad_(True)
        logits = checked_logits(model, probe).to(x.dtype)  # any float logits take x's dtype
        if target is not None:
            f = logits[rows, target] - logits[rows, y]
            return f.detach(), gradient_or_zero(f.sum(), probe, False).reshape(x.shape[0], -1)
        n_classes = logits.shape[1]
        grads = [
            gradient_or_zero(logits[:, k].sum(), probe, k < n_classes - 1) for k in range(n_classes)
        ]
    jac = torch.stack(grads, 1).reshape(x.shape[0], n_classes, -1)
    f_all = (logits - logits[rows, y][:, None]).detach()
    g_all = jac - jac[rows, y][:, None]
    dual = g_all.abs().sum(2) if norm == "inf" else g_all.norm(dim=2)
    distance = f_all.abs() / (dual + TINY)
    distance[rows, y] = float("inf")
    k = distance.argmin(1)
    return f_all[rows, k], g_all[rows, k]


def _run(
    model: nn.Module,
    x0: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor | None,
    start: torch.Tensor,
    settings: dict,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One FAB run from ``start``; return (smallest adversarial point found, its norm; inf if none)."""
    norm, eta, beta, alpha_max = (
        settings["norm"],
        settings["eta"],
        settings["beta"],
        settings["alpha_max"],
    )
    n, shape = x0.shape[0], x0.shape
    flat0 = x0.reshape(n, -1)
    x1 = start.reshape(n, -1).clone()
    best, best_norm = (
        flat0.clone(),
        torch.full((n,), float("inf"), dtype=x0.dtype, device=x0.device),
    )
    for _ in range(settings["steps"]):
        f, g = _boundary(model, x1.reshape(shape), y, target, norm)
        b = (g * x1).sum(1) - f  # the linearised boundary through the current point: g . z = b
        both = project_on_hyperplane(
            torch.cat([x1, flat0]), torch.cat([g, g]), torch.cat([b, b]), norm=norm
        )
        d1, d2 = both[:n], both[n:]
        a1, a2 = row_norm(d1, norm).clamp(min=1e-8), row_norm(d2, norm).clamp(min=1e-8)
        alpha = (a1 / (a1 + a2)).clamp(0.0, alpha_max)[:, None]
        x1 = ((x1 + eta * d1) * (1 - alpha) + (flat0 + eta * d2) * alpha).clamp(0.0, 1.0)
        with torch.no_grad():
            fooled = checked_logits(model, x1.reshape(shape)).argmax(1) != y
        size = row_norm(x1 - flat0, norm)
        better = fooled & (size < best_norm)
        best[better], best_norm[better] = x1[better], size[better]
        x1[fooled] = flat0[fooled] + beta * (x1[fooled] - flat0[fooled])
    return best.reshape(shape), best_norm


def _pairs(
    best_norm: torch.Tensor, y: torch.Tensor, eps: float, target: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The rows a run against ``target`` attacks (not yet fooled within ``eps``, target not their class)."""
    rows = (best_norm > eps).nonzero().squeeze(1)
    if target is None:
        return rows, None
    rows = rows[target[rows] != y[rows]]
    return rows, target[rows]


def _random_start(
    x0: torch.Tensor, radius: torch.Tensor, norm: str, generator: torch.Generator
) -> torch.Tensor:
    """A random point at distance ``radius`` (per row) from ``x0``, clipped to [0, 1] (FAB's restarts)."""
    draw = torch.rand if norm == "inf" else torch.randn  # on the generator's device, then x0's
    noise = draw(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    noise = noise * 2 - 1 if norm == "inf" else noise
    noise = noise / (per_row(row_norm(noise, norm), noise) + TINY)
    return (x0 + per_row(radius, x0) * noise).clamp(0.0, 1.0)


def _unit(name: str, value: object) -> float:
    """A number in [0, 1]."""
    return check_number(name, value, low=0.0, high=1.0)


@attack_contract(
    bounded=True,
    norm=check_norm,
    targeted=flag,
    steps=positive_int,
    restarts=positive_int,
    alpha_max=_unit,
    eta=positive,
    beta=_unit,
    seed=seed_value,
)
def fab(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    norm: str = "inf",
    targeted: bool = True,
    steps: int = 100,
    restarts: int = 1,
    alpha_max: float = 0.1,
    eta: float = 1.05,
    beta: float = 0.9,
    seed: int = 0,
) -> torch.Tensor:
    """FAB (Croce & Hein 2020): per row, the smallest L-inf or L2 adversarial point it finds, if within ``eps``.

    ``targeted=True`` is FAB-T: one run per target among the top-9 other classes by clean logits
    (all other classes when there are fewer), each on the rows not yet fooled within ``eps`` (runs
    whose rows total at most 256 go as one batch, on the rows not fooled before that batch);
    ``targeted=False`` linearises every class at every step (one gradient per class). The first
    restart starts at ``x``, later ones at a random point halfway to the smallest adversarial found
    (or to ``eps``), drawn from ``seed``. Rows it cannot fool within ``eps`` come back as ``x``.
    Used in chapter 8.
    """
    generator = random_stream(seed, "attacks.fab")
    settings = {"norm": norm, "eta": eta, "beta": beta, "alpha_max": alpha_max, "steps": steps}
    with torch.no_grad():
        clean = checked_logits(model, x)
    best, best_norm = x.clone(), torch.where(clean.argmax(1) == y, float("inf"), 0.0).to(x.dtype)
    rounds = runner_up_targets(clean) if targeted else [None]
    size = max(1, _GROUP_ROWS // max(1, int((best_norm > eps).sum())))
    for first in range(0, len(rounds), size):
        for restart in range(restarts):
            pairs = [_pairs(best_norm, y, eps, target) for target in rounds[first : first + size]]
            rows = torch.cat([r for r, _ in pairs])
            if rows.numel() == 0:
                break
            x0 = x[rows]
            start = (
                x0
                if restart == 0
                else _random_start(x0, best_norm[rows].clamp(max=eps) / 2, norm, generator)
            )
            aims = None if not targeted else torch.cat([t for _, t in pairs])
            found, sizes = _run(model, x0, y[rows], aims, start, settings)
            for part in torch.arange(len(rows), device=rows.device).split(
                [len(r) for r, _ in pairs]
            ):
                better = sizes[part] < best_norm[rows[part]]
                kept = rows[part][better]
                best[kept], best_norm[kept] = found[part][better], sizes[part][better]
    return torch.where(per_row(best_norm <= eps, x), best, x)
