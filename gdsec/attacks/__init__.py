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
* ``decision``: :func:`hop_skip_jump` (bounded, reads only the predicted label);
* ``fab``: :func:`fab` (minimum-norm search, reported within ``eps``).

:mod:`.stand_in` builds the BPDA stand-in of any model (:func:`bpda_stand_in`: module trees,
``torch.fx`` graphs, TorchScript), from the searches of :mod:`.graphs`.

:data:`ATTACK_SPECS` is the registry, by name, with each attack's facts; :func:`robust_accuracy`
and :func:`evaluate` (the AutoAttack-style ensemble, with a :class:`Budget`) dispatch through it.
:mod:`.checks` holds the robustness checks and adaptive-attack blocks every layer above shares.
"""

from __future__ import annotations

from gdsec.attacks._core import (
    TOP_TARGETS,
    AttackSpec,
    attack_contract,
    check_attack_inputs,
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
from gdsec.attacks.boundary import fab
from gdsec.attacks.budget import BUDGETS, Budget
from gdsec.attacks.checks import (
    PROBE_ROWS,
    MeanOfDraws,
    StraightThrough,
    is_randomised,
    looks_like_probabilities,
    straight_through,
    straight_through_grad,
    zero_gradient_rows,
)
from gdsec.attacks.decision import hop_skip_jump
from gdsec.attacks.ensemble import ENSEMBLE, Member
from gdsec.attacks.evaluation import Evaluation, evaluate
from gdsec.attacks.gradient import APGD_LOSSES, apgd, checkpoints, fgsm, pgd
from gdsec.attacks.graphs import (
    straight_through_graph,
    straight_through_layers,
    straight_through_modules,
)
from gdsec.attacks.minimal import cw_l2, deepfool
from gdsec.attacks.query import spsa, square_attack
from gdsec.attacks.registry import ATTACK_SPECS, Attack, robust_accuracy
from gdsec.attacks.stand_in import StandIn, bpda_stand_in

__all__ = [
    "PROBE_ROWS",
    "APGD_LOSSES",
    "ATTACK_SPECS",
    "BUDGETS",
    "ENSEMBLE",
    "TOP_TARGETS",
    "Attack",
    "AttackSpec",
    "Budget",
    "Evaluation",
    "MeanOfDraws",
    "Member",
    "StraightThrough",
    "StandIn",
    "apgd",
    "attack_contract",
    "bpda_stand_in",
    "check_attack_inputs",
    "checked_logits",
    "checkpoints",
    "cross_entropy",
    "cw_l2",
    "deepfool",
    "dlr_loss",
    "evaluate",
    "fab",
    "fgsm",
    "hop_skip_jump",
    "input_gradient",
    "is_randomised",
    "keep_best",
    "looks_like_probabilities",
    "margin",
    "perturbation_norm",
    "pgd",
    "project",
    "random_start",
    "robust_accuracy",
    "row_norm",
    "spsa",
    "square_attack",
    "straight_through",
    "straight_through_graph",
    "straight_through_grad",
    "straight_through_layers",
    "straight_through_modules",
    "zero_gradient_rows",
]
