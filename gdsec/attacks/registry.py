"""The attack registry, :data:`ATTACK_SPECS` (every attack by its public name, with its facts), and
:func:`robust_accuracy`, which dispatches through it."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gdsec.attacks._core import AttackSpec, check_attack_inputs, checked_logits, perturbation_norm
from gdsec.attacks.boundary import fab
from gdsec.attacks.decision import hop_skip_jump
from gdsec.attacks.gradient import apgd, fgsm, pgd
from gdsec.attacks.minimal import cw_l2, deepfool
from gdsec.attacks.query import spsa, square_attack
from gdsec.models import eval_mode
from gdsec.validation import check_choice, check_keywords, check_number

__all__ = ["ATTACK_SPECS", "Attack", "robust_accuracy"]

#: An attack as a callable ``(model, x, y) -> x_adv`` (e.g. a ``functools.partial`` of one below).
Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]

#: The registry: every attack by its public name, with its facts (bounded or minimal, randomised, settings).
ATTACK_SPECS: dict[str, AttackSpec] = {
    fn.__name__: fn.spec
    for fn in (fgsm, pgd, apgd, fab, cw_l2, deepfool, square_attack, spsa, hop_skip_jump)
}


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

    ``attack`` is a name from :data:`ATTACK_SPECS`, called with ``attack_kwargs`` as its settings,
    or a callable ``(model, x, y) -> x_adv`` (then no settings). For the bounded attacks ``eps`` is
    the budget and is required. For the minimal-perturbation attacks (cw_l2, deepfool) ``eps``, if
    given, is an L2 budget: a row whose adversarial example needs more than ``eps`` still counts as
    robust.
    Taught in chapters 5, 6 and 8.
    """
    check_attack_inputs(model, x, y)
    if eps is not None:
        eps = check_number("eps", eps, low=0.0)
    if callable(attack):
        check_keywords("robust_accuracy with a callable attack", attack_kwargs, ())
        x_adv, bounded = attack(model, x, y), True
    else:
        spec = ATTACK_SPECS[check_choice("attack", attack, list(ATTACK_SPECS))]
        check_keywords(attack, attack_kwargs, spec.settings)
        bounded = spec.bounded
        if bounded and eps is None:
            raise ValueError(f"eps must be given for attack {attack!r} (its perturbation budget)")
        x_adv = (
            spec.fn(model, x, y, eps, **attack_kwargs)
            if bounded
            else spec.fn(model, x, y, **attack_kwargs)
        )
    if not isinstance(x_adv, torch.Tensor) or x_adv.shape != x.shape:
        raise ValueError("attack must return a tensor of the same shape as x")
    with torch.no_grad(), eval_mode(model):
        correct = checked_logits(model, x).argmax(1) == y
        survives = checked_logits(model, x_adv).argmax(1) == y
    if not bounded and eps is not None:
        survives |= perturbation_norm(x, x_adv, norm="2") > eps + 1e-6
    return (correct & survives).float().mean().item()
