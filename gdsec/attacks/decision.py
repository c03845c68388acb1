"""Decision-based attacks: they read only the model's decision (its predicted label).

:func:`hop_skip_jump` asks one question per query, "is this input misclassified?", answered by
``checked_logits(model, x).argmax(1) != y``; it never reads a score, a margin or a gradient. So a
model that keeps its decisions but flattens its scores or returns a decoy gradient is attacked
exactly as the honest model is (the same seed gives the same adversarial inputs), while the
score-based Square Attack waits for a margin that never falls and the white-box attacks follow the
decoy. Only the decision boundary cannot be faked without changing the decisions.

* :func:`hop_skip_jump` — HopSkipJumpAttack (Chen, Jordan & Wainwright 2020), untargeted, L-infinity
  or L2, used here inside an ``eps``-ball.

The contract (checked inputs, eval mode, output in the ball) is applied by ``attack_contract``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from gdsec.attacks._core import (
    attack_contract,
    checked_logits,
    project,
    row_norm,
    steepest_direction,
)
from gdsec.attacks.settings import positive_int, seed_value
from gdsec.streams import random_stream
from gdsec.validation import check_norm

#: The paper's sample count of the first gradient estimate; iteration t draws ``B0 * sqrt(t)``.
B0 = 100
_MAX_DRAWS = 10_000  # the authors' cap on one estimate's samples
_FIRST_DELTA = 0.1  # probe radius of the first estimate: a tenth of the [0, 1] range
_START_TOLERANCE = 1e-3  # the blending search from the random start toward x
_INSIDE = 1 - 1e-6  # project a shade inside the ball, so the contract's projection moves nothing
_BLOCK = 2**22  # features per forward pass or probe block, to bound memory

#: ``(mask, a) -> points``: the points at parameter ``a`` of a search, for the rows in ``mask``.
SearchPath = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class _Oracle:
    """The model as a decision oracle with a per-row query budget; every point asked is one query."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, limit: int) -> None:
        self.model, self.shape, self.y, self.limit = model, x.shape[1:], y, limit
        self.spent = torch.zeros(len(y), dtype=torch.long, device=y.device)

    def left(self, rows: torch.Tensor) -> torch.Tensor:
        """Queries each of ``rows`` may still ask (one is kept back for the final check)."""
        return self.limit - self.spent[rows]

    def __call__(self, points: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Per point (flattened, one per entry of ``rows``): is it misclassified? Charges the rows."""
        self.spent.index_add_(0, rows, torch.ones_like(rows))
        if len(rows) == 0:
            return torch.zeros(0, dtype=torch.bool, device=rows.device)
        chunk = max(1, _BLOCK // points.shape[1])
        labels = [
            checked_logits(self.model, part.reshape(-1, *self.shape)).argmax(1)
            for part in points.split(chunk)
        ]
        return torch.cat(labels) != self.y[rows]


def _toward(x: torch.Tensor, p: torch.Tensor, a: torch.Tensor, norm: str) -> torch.Tensor:
    """The search path from ``x`` (a = 0) to ``p``: blend ``x + a (p - x)`` (L2, a in [0, 1]) or
    ``p`` clipped to the L-infinity ball of radius ``a`` around ``x`` (a in [0, ||p - x||_inf])."""
    if norm == "2":
        return x + a[:, None] * (p - x)
    return torch.minimum(torch.maximum(p, x - a[:, None]), x + a[:, None])


def _bisect(
    oracle: _Oracle,
    rows: torch.Tensor,
    path: SearchPath,
    high: torch.Tensor,
    tolerance: torch.Tensor,
) -> torch.Tensor:
    """Per row, halve ``[0, high]`` until ``high - low <= tolerance`` or the budget runs out, keeping
    ``path(high)`` misclassified and ``path(low)`` not; returns ``high``."""
    high, low = high.clone(), torch.zeros_like(high)
    while True:
        open_ = (high - low > tolerance) & (oracle.left(rows) > 0)
        if not open_.any():
            return high
        mid = (low[open_] + high[open_]) / 2
        hit = oracle(path(open_, mid), rows[open_])
        high[open_] = torch.where(hit, mid, high[open_])
        low[open_] = torch.where(hit, low[open_], mid)


def _theta(d: int, norm: str) -> float:
    """The paper's binary-search tolerance: ``d^(-3/2)`` (L2) or ``d^(-2)`` (L-infinity)."""
    return d**-1.5 if norm == "2" else d**-2.0


def _to_boundary(
    oracle: _Oracle, rows: torch.Tensor, x: torch.Tensor, p: torch.Tensor, norm: str
) -> torch.Tensor:
    """Binary search from the misclassified points ``p`` toward ``x`` (the paper's, per norm)."""
    theta = _theta(x.shape[1], norm)
    if norm == "2":
        high = torch.ones(len(rows), dtype=x.dtype, device=x.device)
        tolerance = torch.full_like(high, theta)
    else:
        high = row_norm(p - x, "inf")
        tolerance = torch.clamp(high * theta, max=theta)
    high = _bisect(oracle, rows, lambda m, a: _toward(x[m], p[m], a, norm), high, tolerance)
    return _toward(x, p, high, norm)


def _start(
    oracle: _Oracle, x: torch.Tensor, rows: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's start: uniform noise until misclassified, then blended toward ``x``.

    Returns (points, found) for ``rows``; rows whose budget ran out first are not found.
    """
    noise, found = x[rows].clone(), torch.zeros(len(rows), dtype=torch.bool, device=x.device)
    todo = torch.arange(len(rows), device=x.device)
    while len(todo := todo[oracle.left(rows[todo]) > 0]):
        draw = torch.rand(
            len(todo), x.shape[1], generator=generator, dtype=x.dtype, device=generator.device
        ).to(x.device)
        hit = oracle(draw, rows[todo])
        noise[todo[hit]], found[todo[hit]] = draw[hit], True
        todo = todo[~hit]
    mine, xr, far = rows[found], x[rows[found]], noise[found]
    high = torch.ones(len(mine), dtype=x.dtype, device=x.device)
    tolerance = torch.full_like(high, _START_TOLERANCE)
    high = _bisect(oracle, mine, lambda m, a: _toward(xr[m], far[m], a, "2"), high, tolerance)
    noise[found] = _toward(xr, far, high, "2")
    return noise, found


def _boundary_direction(
    oracle: _Oracle,
    rows: torch.Tensor,
    p: torch.Tensor,
    delta: torch.Tensor,
    draws: torch.Tensor,
    norm: str,
    generator: torch.Generator,
) -> torch.Tensor:
    """The paper's Monte Carlo estimate at boundary points ``p``: ``draws`` unit probes of radius
    ``delta`` per row, each signed +1 if misclassified, -1 if not, minus their mean (unless all
    agree); the step direction is its sign (L-infinity) or its unit vector (L2)."""
    d, most = p.shape[1], int(draws.max())
    block = max(1, _BLOCK // (most * d))
    parts = []
    for lo in range(0, len(rows), block):
        pr, dr, nr = p[lo : lo + block], delta[lo : lo + block, None, None], draws[lo : lo + block]
        shape = (len(pr), most, d)
        if norm == "2":
            u = torch.randn(shape, generator=generator, dtype=p.dtype, device=generator.device)
        else:
            u = (
                torch.rand(shape, generator=generator, dtype=p.dtype, device=generator.device) * 2
                - 1
            )
        u = u.to(p.device)
        probes = (pr[:, None] + dr * u / u.norm(dim=2, keepdim=True)).clamp(0.0, 1.0)
        u = (probes - pr[:, None]) / dr
        valid = torch.arange(most, device=p.device) < nr[:, None]
        owner = rows[lo : lo + block, None].expand(-1, most)[valid]
        sign = torch.zeros(valid.shape, dtype=p.dtype, device=p.device)
        sign[valid] = oracle(probes[valid], owner).to(p.dtype) * 2 - 1
        mean = sign.sum(1, keepdim=True) / nr[:, None]
        sign = torch.where(mean.abs() == 1, sign, (sign - mean) * valid)
        parts.append((sign[..., None] * u).sum(1) / nr[:, None])
    return steepest_direction(torch.cat(parts), norm)


def _geometric_step(
    oracle: _Oracle,
    rows: torch.Tensor,
    p: torch.Tensor,
    direction: torch.Tensor,
    size: torch.Tensor,
) -> torch.Tensor:
    """Move ``p`` by ``size * direction``, halving ``size`` until the point is misclassified; rows
    whose budget runs out first stay where they are."""
    moved, size, todo = p.clone(), size.clone(), torch.arange(len(rows), device=p.device)
    while len(todo := todo[oracle.left(rows[todo]) > 0]):
        candidate = (p[todo] + size[todo, None] * direction[todo]).clamp(0.0, 1.0)
        hit = oracle(candidate, rows[todo])
        moved[todo[hit]] = candidate[hit]
        size[todo[~hit]] /= 2
        todo = todo[~hit]
    return moved


@attack_contract(
    bounded=True, norm=check_norm, steps=positive_int, queries=positive_int, seed=seed_value
)
@torch.no_grad()
def hop_skip_jump(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    norm: str = "inf",
    steps: int = 64,
    queries: int = 1000,
    seed: int = 0,
) -> torch.Tensor:
    """HopSkipJumpAttack (Chen et al. 2020), untargeted, reading only the predicted label.

    Per row: one query for the clean decision (rows already misclassified are returned unchanged);
    a start from uniform noise blended toward ``x``; then up to ``steps`` iterations of a binary
    search to the boundary, a Monte Carlo estimate of the boundary's normal there (``B0 * sqrt(t)``
    probes at iteration t, radius ``||x_t - x|| / d``) and a geometric step search along its sign
    (L-infinity) or unit vector (L2). Every forward pass of a row is one of its ``queries``; a row
    stops once its closest misclassified point is within ``eps``. A row whose closest point lies
    farther returns that point projected onto the ``eps``-ball if it is still misclassified (its
    last query), else ``x``. Used in chapter 10 (the audit).
    """
    generator = random_stream(seed, "attacks.hop_skip_jump")
    xf = x.reshape(len(x), -1)
    n, d = xf.shape
    oracle = _Oracle(model, x, y, queries - 1)
    everyone = torch.arange(n, device=x.device)
    todo = everyone[~oracle(xf, everyone)]
    current, found = _start(oracle, xf, todo, generator)
    todo = todo[found]
    if len(todo) == 0:
        return x.clone()
    current = _to_boundary(oracle, todo, xf[todo], current[found], norm)
    best, dist = current.clone(), row_norm(current - xf[todo], norm)
    best_dist = dist.clone()
    for t in range(1, steps + 1):
        live = ((best_dist > eps) & (oracle.left(todo) > 1)).nonzero().squeeze(1)
        if len(live) == 0:
            break
        rows, xr, p = todo[live], xf[todo[live]], current[live]
        delta = torch.full_like(dist[live], _FIRST_DELTA) if t == 1 else dist[live] / d
        draws = oracle.left(rows).clamp(max=min(int(B0 * math.sqrt(t)), _MAX_DRAWS) + 1) - 1
        direction = _boundary_direction(oracle, rows, p, delta, draws, norm, generator)
        moved = _geometric_step(oracle, rows, p, direction, dist[live] / math.sqrt(t))
        current[live] = _to_boundary(oracle, rows, xr, moved, norm)
        dist[live] = row_norm(current[live] - xr, norm)
        better = live[dist[live] < best_dist[live]]
        best[better], best_dist[better] = current[better], dist[better]
    out = xf.clone()
    inside = best_dist <= eps
    out[todo[inside]] = best[inside]
    far = todo[~inside]
    if len(far):
        projected = project(xf[far], best[~inside], eps * _INSIDE, norm)
        fooled = oracle(projected, far)
        out[far[fooled]] = projected[fooled]
    return out.reshape(x.shape)
