"""Test-time (evasion) attacks: the gradient that trains a model, aimed at its inputs.

Every attack is called as ``attack(model, x, y, ...)`` (bounded attacks take the budget ``eps``
next) with a model that maps inputs in [0, 1] to logits, on any input shape (images
``(N, 1, 8, 8)`` or tabular ``(N, d)``). It returns a new, detached tensor of the same shape and
dtype, clipped to [0, 1] and inside its budget; it leaves ``x`` untouched, restores
``model.training`` and never touches the parameters' ``.grad``. Bad arguments raise
``ValueError`` naming the argument. The contract is written once, in ``_core.attack_contract``.

* ``gradient``: :func:`fgsm`, :func:`pgd`, :func:`apgd` (bounded, white-box);
* ``minimal``: :func:`cw_l2`, :func:`deepfool` (smallest L2 perturbation, white-box);
* ``query``: :func:`square_attack`, :func:`spsa` (bounded, gradient-free);
* ``fab``: :func:`fab` (minimum-norm search, reported within ``eps``).

:data:`ATTACKS` is the registry, by name, with each attack's facts; :func:`robust_accuracy`
dispatches through it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gdsec.attacks._core import (
    NORMS,
    AttackSpec,
    attack_contract,
    check_attack_inputs,
    check_norm,
    checked_logits,
    cross_entropy,
    dlr_loss,
    input_gradient,
    keep_best,
    margin,
    perturbation_norm,
    project,
    random_start,
    row_norm,
)
from gdsec.attacks.evaluate import ENSEMBLE, Evaluation, evaluate, wilson_interval
from gdsec.attacks.fab import fab
from gdsec.attacks.gradient import APGD_LOSSES, apgd, checkpoints, fgsm, pgd
from gdsec.attacks.minimal import cw_l2, deepfool
from gdsec.attacks.query import spsa, square_attack
from gdsec.models import eval_mode
from gdsec.validation import check_choice, check_keywords, check_number

__all__ = [
    "ALIASES",
    "APGD_LOSSES",
    "ATTACKS",
    "NORMS",
    "ENSEMBLE",
    "Attack",
    "AttackSpec",
    "Evaluation",
    "apgd",
    "attack_contract",
    "check_attack_inputs",
    "check_norm",
    "checked_logits",
    "checkpoints",
    "cross_entropy",
    "cw_l2",
    "deepfool",
    "dlr_loss",
    "evaluate",
    "fab",
    "fgsm",
    "input_gradient",
    "keep_best",
    "margin",
    "perturbation_norm",
    "pgd",
    "project",
    "random_start",
    "robust_accuracy",
    "row_norm",
    "spsa",
    "square_attack",
    "wilson_interval",
]

#: An attack as a callable ``(model, x, y) -> x_adv`` (e.g. a ``functools.partial`` of one below).
Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]

#: The registry: every attack by its public name, with its facts (bounded or minimal, randomised, settings).
ATTACKS: dict[str, AttackSpec] = {fn.__name__: fn.spec for fn in (fgsm, pgd, apgd, fab, cw_l2, deepfool, square_attack, spsa)}

#: Older short names still accepted by :func:`robust_accuracy`.
ALIASES = {"square": "square_attack"}


def robust_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: str | Attack,
    *,
    eps: float | None = None,
    **attack_kwargs: object,
) -> float:
    """Fraction of rows classified correctly both clean and after ``attack``.

    ``attack`` is a name from :data:`ATTACKS` (or :data:`ALIASES`), called with ``attack_kwargs``
    as its settings, or a callable ``(model, x, y) -> x_adv`` (then no settings). For the bounded
    attacks ``eps`` is the budget and is required. For the minimal-perturbation attacks (cw_l2,
    deepfool) ``eps``, if given, is an L2 budget: a row whose adversarial example needs more than
    ``eps`` still counts as robust.
    Taught in chapters 5, 6 and 8.
    """
    check_attack_inputs(model, x, y)
    if eps is not None:
        eps = check_number("eps", eps, low=0.0)
    if callable(attack):
        check_keywords("robust_accuracy with a callable attack", attack_kwargs, ())
        x_adv, bounded = attack(model, x, y), True
    else:
        name = ALIASES.get(attack, attack) if isinstance(attack, str) else attack
        spec = ATTACKS[check_choice("attack", name, [*ATTACKS, *ALIASES])]
        check_keywords(name, attack_kwargs, spec.settings)
        bounded = spec.bounded
        if bounded and eps is None:
            raise ValueError(f"eps must be given for attack {name!r} (its perturbation budget)")
        x_adv = spec.fn(model, x, y, eps, **attack_kwargs) if bounded else spec.fn(model, x, y, **attack_kwargs)
    if not isinstance(x_adv, torch.Tensor) or x_adv.shape != x.shape:
        raise ValueError("attack must return a tensor of the same shape as x")
    with torch.no_grad(), eval_mode(model):
        correct = checked_logits(model, x).argmax(1) == y
        survives = checked_logits(model, x_adv).argmax(1) == y
    if not bounded and eps is not None:
        survives |= perturbation_norm(x, x_adv, norm="2") > eps + 1e-6
    return (correct & survives).float().mean().item()
