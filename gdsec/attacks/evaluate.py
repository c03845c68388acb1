"""Robustness evaluation to the AutoAttack standard (Croce & Hein 2020): the per-example worst case.

:func:`evaluate` runs the standard ensemble in sequence, each attack only on the rows still robust,
so a row counts as robust only if every attack failed on it:

1. ``apgd-ce``: Auto-PGD on the cross-entropy (``gdsec.attacks.apgd``);
2. ``apgd-t``: Auto-PGD on the targeted, scale-invariant DLR loss, top-9 targets;
3. ``fab-t``: targeted FAB, the minimum-norm attack (``gdsec.attacks.fab``), top-9 targets;
4. ``square``: the gradient-free Square Attack, 5,000 queries, ``p_init = 0.8`` (L-infinity only).

With two classes DLR has no third logit to normalise by: ``apgd-t`` then attacks the targeted
margin ``z_t - z_y`` (scale-invariant in sign, never saturating), with the one other class as target.

It also runs AutoAttack's checks and a few of Carlini et al. (2019), each a ``flags`` entry that says
what it saw: a zero input gradient, a randomised forward pass (then every attack and the scoring
use EOT), probabilities instead of logits, the gradient-free attack beating the white-box ones,
and accuracy rising with ``eps``. ``flags`` is empty when none of these happened. Square "beats"
the white-box attacks when it breaks more than 0.2 % of the rows (AutoAttack's threshold) and at
least two rows (0.2 % of a small evaluation is less than one row).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from gdsec.attacks._core import (
    check_attack_inputs,
    check_norm,
    checked_logits,
    cross_entropy,
    input_gradient,
)
from gdsec.attacks.fab import fab
from gdsec.attacks.gradient import apgd
from gdsec.attacks.query import square_attack
from gdsec.models import eval_mode
from gdsec.streams import seeded_global_rng
from gdsec.validation import check_int, check_keywords, check_number, check_seed

__all__ = ["ENSEMBLE", "Evaluation", "evaluate", "wilson_interval"]

#: The standard ensemble, in the order it runs.
ENSEMBLE = ("apgd-ce", "apgd-t", "fab-t", "square")
_WHITE_BOX = ("apgd-ce", "apgd-t", "fab-t")
_SQUARE_MARGIN = 0.002  # AutoAttack's check_square_sr: Square may lower accuracy by at most 0.2 %
_RANDOM_TOL = 1e-4  # AutoAttack's check_randomized: largest change of the L2-normalised logits
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class Evaluation:
    """Outcome of :func:`evaluate`: accuracies, the per-row outcome and adversarial input, and flags.

    ``robust`` is a bool per row; ``x_adv`` holds, per row, the input that broke it (else the clean
    input); ``broken_by`` names that attack per row ("clean" for rows misclassified to begin with,
    None for robust rows); ``accuracy_after`` maps each attack to the robust accuracy after it ran
    (in sequence, so it never rises); ``ci95`` is the Wilson 95 % interval of ``robust_accuracy``;
    ``budgets`` the settings each attack ran with; ``seconds`` the time each one took.
    Taught in chapters 6 and 8.
    """

    clean_accuracy: float
    robust_accuracy: float
    robust: torch.Tensor
    x_adv: torch.Tensor
    accuracy_after: dict[str, float]
    broken_by: tuple[str | None, ...]
    ci95: tuple[float, float]
    n: int
    eps: float
    norm: str
    budgets: dict[str, dict[str, object]]
    seconds: dict[str, float]
    flags: tuple[str, ...]


def wilson_interval(successes: int, n: int, *, z: float = _Z95) -> tuple[float, float]:
    """The Wilson score interval for a proportion ``successes / n`` (95 % for the default ``z``).

    Used in chapter 8.
    """
    n = check_int("n", n, low=1)
    successes = check_int("successes", successes, low=0, high=n)
    z = check_number("z", z, low=0.0, low_open=True)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


class _MeanOfDraws(nn.Module):
    """EOT: the mean logits of ``draws`` forward passes of a randomised model (gradients average too)."""

    def __init__(self, model: nn.Module, draws: int) -> None:
        super().__init__()
        self.model, self.draws = model, draws

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of ``draws`` random logits of ``x``."""
        return torch.stack([self.model(x) for _ in range(self.draws)]).mean(0)


def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Predicted classes, without gradients."""
    with torch.no_grad():
        return checked_logits(model, x).argmax(1)


def _is_randomised(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether two forward passes on ``x`` differ (AutoAttack's check_randomized, on normalised logits)."""
    with torch.no_grad():
        first, second = checked_logits(model, x), checked_logits(model, x)
    unit = [z / (z.norm(dim=1, keepdim=True) + 1e-10) for z in (first, second)]
    return bool((unit[0] - unit[1]).norm(dim=1).max() > _RANDOM_TOL or (first.argmax(1) != second.argmax(1)).any())


def _looks_like_probabilities(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether every output row lies in [0, 1] and sums to 1 (AutoAttack's check_range_output)."""
    with torch.no_grad():
        out = checked_logits(model, x)
    return bool(out.min() > -1e-5 and out.max() < 1 + 1e-5 and ((out.sum(1) - 1).abs() < 1e-5).all())


def _zero_gradient_rows(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """How many rows have an exactly zero cross-entropy gradient w.r.t. the input (check_zero_gradients)."""
    _, grad = input_gradient(model, x, y, cross_entropy)
    return int((grad.reshape(len(x), -1).abs().sum(1) == 0).sum())


def _attack(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, b: dict, norm: str, seed: int) -> torch.Tensor:
    """Run ensemble member ``name`` with its budget ``b``."""
    if name == "apgd-ce":
        return apgd(model, x, y, eps, norm=norm, loss="ce", steps=b["steps"], restarts=b["restarts"], seed=seed)
    if name == "apgd-t":
        return apgd(model, x, y, eps, norm=norm, targeted=True, steps=b["steps"], restarts=b["restarts"], seed=seed)
    if name == "fab-t":
        return fab(model, x, y, eps, norm=norm, targeted=True, steps=b["steps"], restarts=b["restarts"], seed=seed)
    return square_attack(model, x, y, eps, queries=b["queries"], p_init=b["p_init"], seed=seed)


def _check_attacks(attacks: object, norm: str) -> tuple[str, ...]:
    """``attacks`` as a non-empty tuple of distinct ensemble names (``square`` needs L-infinity)."""
    if isinstance(attacks, str) or not isinstance(attacks, tuple | list) or not attacks:
        raise ValueError(f"attacks must be a non-empty tuple of names from {list(ENSEMBLE)}, got {attacks!r}")
    unknown = [a for a in attacks if a not in ENSEMBLE]
    if unknown or len(set(attacks)) != len(attacks):
        raise ValueError(f"attacks must be distinct names from {list(ENSEMBLE)}, got {list(attacks)!r}")
    if "square" in attacks and norm != "inf":
        raise ValueError("attacks may include 'square' only with norm='inf' (the Square Attack here is L-infinity)")
    return tuple(attacks)


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    norm: str = "inf",
    seed: int = 0,
    attacks: tuple[str, ...] | None = None,
    steps: int = 100,
    fab_steps: int = 100,
    restarts: int = 1,
    queries: int = 5000,
    p_init: float = 0.8,
    eot_samples: int = 20,
    check_rows: int = 100,
    **unknown: object,
) -> Evaluation:
    """Per-example worst-case robust accuracy at ``eps`` under the AutoAttack standard ensemble, with flags.

    ``attacks`` (default :data:`ENSEMBLE`, without ``square`` for L2) run in order, each on the rows
    still robust. Budgets: ``steps`` and ``restarts`` for both APGD runs, ``fab_steps`` for FAB-T,
    ``queries`` and ``p_init`` for Square. The checks read the first ``check_rows`` rows: if two
    forward passes differ the model is randomised and every attack, and the scoring, use the mean
    logits of ``eot_samples`` draws (EOT); ``eps``-monotonicity re-runs ``apgd-ce`` at ``2 * eps``
    on them (``check_rows=0`` skips it). A model that draws from torch's global generator draws
    from it seeded with a stream derived from ``seed`` (and the global state is restored afterwards), so the result is
    deterministic; a model with its own generator continues its own sequence of draws.
    Taught in chapters 6 and 8.
    """
    check_keywords("evaluate", unknown, ())
    n_classes = check_attack_inputs(model, x, y)
    eps = check_number("eps", eps, low=0.0)
    norm = check_norm("norm", norm)
    check_seed(seed)
    attacks = _check_attacks((ENSEMBLE if norm == "inf" else _WHITE_BOX) if attacks is None else attacks, norm)
    b_apgd = {"steps": check_int("steps", steps, low=1), "restarts": check_int("restarts", restarts, low=1)}
    b_fab = {"steps": check_int("fab_steps", fab_steps, low=1), "restarts": b_apgd["restarts"]}
    b_square = {"queries": check_int("queries", queries, low=1), "p_init": check_number("p_init", p_init, low=0.0, high=1.0, low_open=True)}
    eot_samples = check_int("eot_samples", eot_samples, low=1)
    check_rows = check_int("check_rows", check_rows, low=0)
    targets = min(9, n_classes - 1)
    budgets = {"apgd-ce": b_apgd, "apgd-t": {**b_apgd, "targets": targets}, "fab-t": {**b_fab, "targets": targets}, "square": b_square}
    x, y = x.detach(), y.detach()
    with seeded_global_rng(seed, "attacks.evaluate.model"), eval_mode(model):  # the model's own randomness only
        return _evaluate(model, x, y, eps, norm, seed, attacks, {a: budgets[a] for a in attacks}, eot_samples, check_rows)


def _evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm: str,
    seed: int,
    attacks: tuple[str, ...],
    budgets: dict[str, dict[str, object]],
    eot_samples: int,
    check_rows: int,
) -> Evaluation:
    """The body of :func:`evaluate`, on checked arguments, with the model in eval mode."""
    probe = x[: max(check_rows, 1)]
    flags: list[str] = []
    if _looks_like_probabilities(model, probe):
        flags.append("probabilities: the outputs are in [0, 1] and sum to 1 per row; attacks need logits (drop the softmax)")
    target = model
    if _is_randomised(model, probe):
        target = _MeanOfDraws(model, eot_samples).eval()
        flags.append(f"randomised: two forward passes on the same input differ; every attack and the scoring used EOT, the mean logits of {eot_samples} draws")
    correct = _predict(target, x) == y
    zero = _zero_gradient_rows(target, x[correct], y[correct]) if correct.any() else 0
    if zero:
        flags.append(f"zero-gradient: {zero} of {int(correct.sum())} correctly classified rows have an exactly zero cross-entropy input gradient (saturated or non-differentiable model); read the DLR, targeted and gradient-free results")
    robust, x_adv = correct.clone(), x.clone()
    broken_by: list[str | None] = [None if c else "clean" for c in correct.tolist()]
    accuracy_after, seconds = {}, {}
    for name in attacks:
        start = time.perf_counter()
        rows = robust.nonzero().squeeze(1)
        if rows.numel():
            found = _attack(name, target, x[rows], y[rows], eps, budgets[name], norm, seed)
            fooled = _predict(target, found) != y[rows]
            robust[rows[fooled]] = False
            x_adv[rows[fooled]] = found[fooled]
            for row in rows[fooled].tolist():
                broken_by[row] = name
        accuracy_after[name] = int(robust.sum()) / len(x)
        if name == "apgd-ce":
            after_ce = robust.clone()  # APGD-CE alone at eps, for the like-with-like monotonicity check
        seconds[name] = time.perf_counter() - start
    flags += _sequence_flags(accuracy_after, len(x))
    if check_rows and eps > 0 and "apgd-ce" in attacks:
        flags += _monotone_flag(target, x[:check_rows], y[:check_rows], after_ce[:check_rows], eps, norm, budgets["apgd-ce"], seed)
    n, kept = len(x), int(robust.sum())
    return Evaluation(
        clean_accuracy=int(correct.sum()) / n, robust_accuracy=kept / n, robust=robust, x_adv=x_adv,
        accuracy_after=accuracy_after, broken_by=tuple(broken_by), ci95=wilson_interval(kept, n), n=n,
        eps=eps, norm=norm, budgets=budgets, seconds=seconds, flags=tuple(flags),
    )


def _sequence_flags(accuracy_after: dict[str, float], n: int) -> list[str]:
    """AutoAttack's check_square_sr: Square broke more than 0.2 % of the rows the white-box attacks left.

    On fewer than 500 rows 0.2 % is less than one row, so one row is not enough: it takes two.
    """
    names = list(accuracy_after)
    if "square" not in names or names.index("square") == 0:
        return []
    before = accuracy_after[names[names.index("square") - 1]]
    broken = round((before - accuracy_after["square"]) * n)
    drop = broken / n
    if broken <= _SQUARE_MARGIN * n + 1e-9 or broken < 2:
        return []
    return [f"square-beats-white-box: the gradient-free Square Attack broke {broken} row(s) ({drop:.1%}) the gradient attacks missed; the gradients may be masked, try an adaptive attack"]


def _monotone_flag(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, robust: torch.Tensor, eps: float, norm: str, budget: dict, seed: int
) -> list[str]:
    """Carlini et al.: robust accuracy must not rise with eps; the same APGD-CE at ``eps`` (``robust``: the rows
    it left standing in the ensemble's first stage) and at ``2 * eps``.

    Like is compared with like (one attack at two budgets), so a loss that one attack cannot climb
    at either budget is left to the zero-gradient flag; one row of slack keeps ties quiet.
    """
    x_far = apgd(model, x, y, 2 * eps, norm=norm, loss="ce", steps=budget["steps"], restarts=budget["restarts"], seed=seed)
    at_double = (_predict(model, x_far) == y).float().mean().item()
    at_eps = robust.float().mean().item()
    if at_double <= at_eps + 1 / len(x) + 1e-9:
        return []
    return [f"non-monotone: on the first {len(x)} rows APGD-CE leaves {at_double:.1%} at eps = {2 * eps:g} but "
            f"{at_eps:.1%} at eps = {eps:g}; accuracy that rises with the budget means the attack is failing, not the model holding"]
