"""Robustness evaluation to the AutoAttack standard (Croce & Hein 2020): the per-example worst case.

:func:`evaluate` runs the standard ensemble in sequence, each attack only on the rows still robust,
so a row counts as robust only if every attack failed on it. Each :class:`Member` of the ensemble is
an attack of the registry (:data:`gdsec.attacks.ATTACK_SPECS`) with its settings, labelled by its
registry name (plus a variant when two members share one):

1. ``apgd-ce``: ``apgd`` on the cross-entropy;
2. ``apgd-t``: ``apgd`` on the targeted, scale-invariant DLR loss, top-9 targets;
3. ``fab-t``: targeted ``fab``, the minimum-norm attack, top-9 targets;
4. ``square_attack``: the gradient-free Square Attack, ``p_init = 0.8`` (L-infinity only).

How hard each attacks is one :class:`gdsec.attacks.Budget`. With two classes DLR has no third logit
to normalise by: ``apgd-t`` then attacks the targeted margin ``z_t - z_y`` (scale-invariant in sign,
never saturating), with the one other class as target.

It also runs AutoAttack's checks (:mod:`gdsec.attacks.checks`) and a few of Carlini et al. (2019),
each a ``flags`` entry that says what it saw: a zero input gradient, a randomised forward pass
(then every attack and the scoring use EOT), probabilities instead of logits, the gradient-free
attack beating the white-box ones, accuracy rising with ``eps``, a backward pass that disagrees
with the forward pass (``inconsistent-gradient``), scores that do not move in the ball
(``flat-output``) and scores that jump where the decision changes (``discontinuous-scores``).
``flags`` is empty when none of these happened. After a flag that says the
gradients cannot be trusted (:data:`MASKING_FLAGS`) the default ensemble, which ends with the
gradient-free Square, adds the decision-based HopSkipJump (:func:`gdsec.attacks.hop_skip_jump`,
labels only, ``budget.square_steps`` queries) on the rows still robust. Square
"beats" the white-box attacks when it breaks more than 0.2 % of the rows (AutoAttack's threshold)
and at least two rows (0.2 % of a small evaluation is less than one row).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from gdsec.attacks._core import check_attack_inputs, checked_logits, target_count
from gdsec.attacks.batches import check_batch_size, in_batches
from gdsec.attacks.budget import BUDGETS, Budget
from gdsec.attacks.checks import (
    PROBE_ROWS,
    MeanOfDraws,
    is_randomised,
    looks_like_probabilities,
    zero_gradient_rows,
)
from gdsec.attacks.continuity import consistency_flags
from gdsec.attacks.decision import hop_skip_jump
from gdsec.attacks.ensemble import ENSEMBLE, Member, check_members
from gdsec.models import eval_mode
from gdsec.seeds.stats import wilson_interval
from gdsec.streams import seeded_global_rng
from gdsec.validation import check_keywords, check_norm, check_number, check_seed

__all__ = ["Evaluation", "evaluate"]

_SQUARE_MARGIN = 0.002  # AutoAttack's check_square_sr: Square may lower accuracy by at most 0.2 %

#: The flags after which the gradient-free members run as well (the gradients cannot be trusted).
MASKING_FLAGS = (
    "randomised",
    "zero-gradient",
    "inconsistent-gradient",
    "flat-output",
    "discontinuous-scores",
)

#: The decision-based member's label (HopSkipJump, label-only, with ``budget.square_steps`` queries).
DECISION_LABEL = "hop_skip_jump"


@dataclass(frozen=True)
class Evaluation:
    """Outcome of :func:`evaluate`: accuracies, the per-row outcome and adversarial input, and flags.

    ``robust`` is a bool per row; ``x_adv`` holds, per row, the input that broke it (else the clean
    input); ``broken_by`` names that attack (its member label) per row ("clean" for rows
    misclassified to begin with, None for robust rows); ``accuracy_after`` maps each member to the
    robust accuracy after it ran (in sequence, so it never rises); ``ci95`` is the Wilson 95 %
    interval of ``robust_accuracy``; ``budgets`` the settings each member ran with; ``seconds`` the
    time each one took. Taught in chapters 6 and 8.
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


def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Predicted classes, without gradients."""
    with torch.no_grad():
        return checked_logits(model, x).argmax(1)


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    norm: str = "inf",
    budget: Budget = BUDGETS["standard"],
    seed: int = 0,
    attacks: tuple[str | Member, ...] | None = None,
    batch_size: int | None = None,
    **unknown: object,
) -> Evaluation:
    """Per-example worst-case robust accuracy at ``eps`` under the AutoAttack standard ensemble, with flags.

    ``attacks`` (default :data:`ENSEMBLE`, without ``square_attack`` for L2; labels or
    :class:`Member` records) run in order, each on the rows still robust, with ``budget``; only the
    default ensemble adds the decision-based member after a masking flag. The
    checks probe the first :data:`~gdsec.attacks.checks.PROBE_ROWS` rows: if the model is randomised
    (:func:`gdsec.attacks.checks.is_randomised`, in eval mode, where it is attacked) every attack and
    the scoring use the mean logits of ``budget.draws`` draws (EOT); ``eps``-monotonicity re-runs
    ``apgd-ce`` at ``2 * eps`` on the first ``budget.check_rows`` rows (``check_rows=0`` skips it).
    A model that draws from torch's global generator draws from it seeded with a stream derived
    from ``seed`` (and the global state is restored afterwards), so the result is deterministic; a
    model with its own generator continues its own sequence of draws. Each attack takes
    ``batch_size`` rows at a time (:func:`gdsec.attacks.batches.in_batches`; default all at once).
    Taught in chapters 6 and 8.
    """
    check_keywords("evaluate", unknown, ())
    n_classes = check_attack_inputs(model, x, y)
    eps = check_number("eps", eps, low=0.0)
    norm = check_norm("norm", norm)
    check_seed(seed)
    if not isinstance(budget, Budget):
        raise ValueError(f"budget must be a gdsec.attacks.Budget, got {type(budget).__name__}")
    default = ENSEMBLE if norm == "inf" else ENSEMBLE[:3]
    members = check_members(default if attacks is None else attacks, norm)
    x, y, chunk = x.detach(), y.detach(), check_batch_size("batch_size", batch_size)
    with seeded_global_rng(seed, "attacks.evaluate.model"), eval_mode(model):  # its own draws only
        return _evaluate(
            model, x, y, eps, norm, seed, members, budget, n_classes, attacks is None, chunk
        )


def _evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm: str,
    seed: int,
    members: tuple[Member, ...],
    budget: Budget,
    n_classes: int,
    escalate: bool,
    batch_size: int | None,
) -> Evaluation:
    """The body of :func:`evaluate`, on checked arguments, with the model in eval mode."""
    probe, flags = x[:PROBE_ROWS], []
    if looks_like_probabilities(model, probe):
        flags.append(
            "probabilities: the outputs are in [0, 1] and sum to 1 per row; attacks need logits (drop the softmax)"
        )
    target = model
    if is_randomised(model, probe):
        target = MeanOfDraws(model, budget.draws).eval()
        flags.append(
            "randomised: two forward passes on the same input differ; every attack and the scoring "
            f"used EOT, the mean logits of {budget.draws} draws"
        )
    correct = _predict(target, x) == y
    zero = int(zero_gradient_rows(target, x[correct], y[correct]).sum()) if correct.any() else 0
    if zero:
        flags.append(
            f"zero-gradient: {zero} of {int(correct.sum())} correctly classified rows have an exactly "
            "zero cross-entropy input gradient (saturated or non-differentiable model); read the DLR, "
            "targeted and gradient-free results"
        )
    if target is model:
        flags += consistency_flags(model, probe, eps, seed=seed)
    robust, x_adv = correct.clone(), x.clone()
    broken_by: list[str | None] = [None if c else "clean" for c in correct.tolist()]
    accuracy_after, seconds, after_first = {}, {}, robust.clone()

    def attack(label: str, craft: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        start = time.perf_counter()
        rows = robust.nonzero().squeeze(1)
        if rows.numel():
            found = in_batches(lambda _, a, b: craft(a, b), batch_size)(target, x[rows], y[rows])
            fooled = _predict(target, found) != y[rows]
            robust[rows[fooled]] = False
            x_adv[rows[fooled]] = found[fooled]
            for row in rows[fooled].tolist():
                broken_by[row] = label
        accuracy_after[label] = int(robust.sum()) / len(x)
        seconds[label] = time.perf_counter() - start

    for member in members:
        attack(member.label, _crafter(member, target, eps, norm, budget, seed))
        if member == ENSEMBLE[0]:
            after_first = robust.clone()  # APGD-CE alone at eps, for the monotonicity check
    flags += _sequence_flags(accuracy_after, len(x))
    if escalate and any(f.startswith(MASKING_FLAGS) for f in flags):  # labels only
        q = budget.square_steps
        attack(
            DECISION_LABEL,
            lambda a, b: hop_skip_jump(target, a, b, eps, norm=norm, queries=q, seed=seed),
        )
    if budget.check_rows and eps > 0 and ENSEMBLE[0] in members:
        rows = slice(0, budget.check_rows)
        flags += _monotone_flag(
            target, x[rows], y[rows], after_first[rows], eps, norm, budget, seed
        )
    targets = target_count(n_classes)
    budgets: dict[str, dict[str, object]] = {
        m.label: {
            **m.budgeted(norm, budget),
            **({"targets": targets} if m.settings.get("targeted") else {}),
        }
        for m in members
    }
    if DECISION_LABEL in accuracy_after:
        budgets[DECISION_LABEL] = {"norm": norm, "queries": budget.square_steps}
    n, kept = len(x), int(robust.sum())
    return Evaluation(
        clean_accuracy=int(correct.sum()) / n,
        robust_accuracy=kept / n,
        robust=robust,
        x_adv=x_adv,
        accuracy_after=accuracy_after,
        broken_by=tuple(broken_by),
        ci95=wilson_interval(kept, n),
        n=n,
        eps=eps,
        norm=norm,
        budgets=budgets,
        seconds=seconds,
        flags=tuple(flags),
    )


def _crafter(
    member: Member, model: nn.Module, eps: float, norm: str, budget: Budget, seed: int
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``member``'s attack on ``model`` as a function of the rows it attacks."""
    return lambda xs, ys: member.run(model, xs, ys, eps, norm, budget, seed)


def _sequence_flags(accuracy_after: dict[str, float], n: int) -> list[str]:
    """AutoAttack's check_square_sr: Square broke more than 0.2 % of the rows the white-box attacks left.

    On fewer than 500 rows 0.2 % is less than one row, so one row is not enough: it takes two.
    """
    names, square = list(accuracy_after), ENSEMBLE[3].label
    if square not in names or names.index(square) == 0:
        return []
    before = accuracy_after[names[names.index(square) - 1]]
    broken = round((before - accuracy_after[square]) * n)
    drop = broken / n
    if broken <= _SQUARE_MARGIN * n + 1e-9 or broken < 2:
        return []
    return [
        f"square-beats-white-box: the gradient-free Square Attack broke {broken} row(s) ({drop:.1%}) "
        "the gradient attacks missed; the gradients may be masked, try an adaptive attack"
    ]


def _monotone_flag(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    robust: torch.Tensor,
    eps: float,
    norm: str,
    budget: Budget,
    seed: int,
) -> list[str]:
    """Carlini et al.: robust accuracy must not rise with eps; the same APGD-CE at ``eps`` (``robust``: the rows
    it left standing in the ensemble's first stage) and at ``2 * eps``.

    Like is compared with like (one attack at two budgets), so a loss that one attack cannot climb
    at either budget is left to the zero-gradient flag; one row of slack keeps ties quiet.
    """
    x_far = ENSEMBLE[0].run(model, x, y, 2 * eps, norm, budget, seed)
    at_double = (_predict(model, x_far) == y).float().mean().item()
    at_eps = robust.float().mean().item()
    if at_double <= at_eps + 1 / len(x) + 1e-9:
        return []
    return [
        f"non-monotone: on the first {len(x)} rows APGD-CE leaves {at_double:.1%} at eps = {2 * eps:g} but "
        f"{at_eps:.1%} at eps = {eps:g}; accuracy that rises with the budget means the attack is "
        "failing, not the model holding"
    ]
