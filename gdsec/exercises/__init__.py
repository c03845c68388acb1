"""Exercises that check themselves: ``CHECKS[name](fn)`` runs a student's ``fn`` against the tested package.

Each checker draws fresh random cases from ``seed`` (default 0), including edge cases, compares the
student's answers with the reference function of ``gdsec`` and returns a :class:`Result` whose
``feedback`` names the input, what was expected, what came back and, for the typical mistakes,
what went wrong. A wrong or crashing ``fn`` is feedback, never an exception; a ``fn`` that is not
callable raises ``ValueError``. ``CHAPTERS`` maps each exercise to the chapter that sets it.

Taught in chapters 1, 2, 3, 4, 5, 6, 7, 8, 9 and 10.
"""

from __future__ import annotations

from gdsec.exercises.core import Checker, Result
from gdsec.exercises.evasion import check_fgsm, check_pgd_project, check_straight_through
from gdsec.exercises.privacy import check_infer_label
from gdsec.exercises.robust import (
    check_coordinate_median,
    check_flip_labels,
    check_reconstruct_trigger,
)
from gdsec.exercises.steps import check_adam_step, check_clip_gradient, check_gradient_step

__all__ = ["CHAPTERS", "CHECKS", "Checker", "Result"]

#: Exercise name -> checker ``(fn, *, seed=0) -> Result``.
CHECKS: dict[str, Checker] = {
    "gradient_step": check_gradient_step,
    "adam_step": check_adam_step,
    "flip_labels": check_flip_labels,
    "coordinate_median": check_coordinate_median,
    "fgsm": check_fgsm,
    "pgd_project": check_pgd_project,
    "clip_gradient": check_clip_gradient,
    "straight_through": check_straight_through,
    "infer_label": check_infer_label,
    "reconstruct_trigger": check_reconstruct_trigger,
}

#: Exercise name -> the chapter whose self-checking exercise it is.
CHAPTERS: dict[str, int] = {name: chapter for chapter, name in enumerate(CHECKS, start=1)}
