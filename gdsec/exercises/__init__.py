"""Exercises that check themselves: ``EXERCISES[name](fn)`` runs a student's ``fn`` against the tested package.

Each grader draws fresh random cases from ``seed`` (default 0), including edge cases, compares the
student's answers with the reference function of ``gdsec`` and returns a :class:`Result` whose
``feedback`` names the input, what was expected, what came back and, for the typical mistakes,
what went wrong. A wrong or crashing ``fn`` is feedback, never an exception; a ``fn`` that is not
callable raises ``ValueError``. ``CHAPTERS`` maps each exercise to the chapter that sets it.

Taught in chapters 1, 2, 3, 4, 5, 6, 7, 8, 9 and 10.
"""

from __future__ import annotations

from gdsec.exercises.core import Grader, Result
from gdsec.exercises.evasion import grade_fgsm, grade_pgd_project, grade_straight_through
from gdsec.exercises.privacy import grade_infer_label
from gdsec.exercises.robust import grade_coordinate_median, grade_flip_labels
from gdsec.exercises.steps import grade_adam_step, grade_clip_gradient, grade_gradient_step
from gdsec.exercises.triggers import grade_rebuild_trigger

__all__ = ["CHAPTERS", "EXERCISES", "Grader", "Result"]

#: Exercise name -> grader ``(fn, *, seed=0) -> Result``.
EXERCISES: dict[str, Grader] = {
    "gradient_step": grade_gradient_step,
    "adam_step": grade_adam_step,
    "flip_labels": grade_flip_labels,
    "coordinate_median": grade_coordinate_median,
    "fgsm": grade_fgsm,
    "pgd_project": grade_pgd_project,
    "clip_gradient": grade_clip_gradient,
    "straight_through": grade_straight_through,
    "infer_label": grade_infer_label,
    "rebuild_trigger": grade_rebuild_trigger,
}

#: Exercise name -> the chapter whose self-checking exercise it is.
CHAPTERS: dict[str, int] = {name: chapter for chapter, name in enumerate(EXERCISES, start=1)}
