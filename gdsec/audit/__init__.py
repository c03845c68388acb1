"""A gradient-security audit: five questions about a trained model, each answered with measured evidence.

:func:`audit` runs one check per question and returns an :class:`AuditReport` (one
:class:`Finding` each: severity, evidence, recommendation) that renders as a table in a notebook
and exports to Markdown, JSON and HTML. The package is cut by responsibility:

* :mod:`gdsec.audit.report`: the questions, severities, findings and their rendering;
* :mod:`gdsec.audit.config`: :class:`AuditConfig`, the threat model, budgets and thresholds;
* :mod:`gdsec.audit.references`: clean reference models trained on the trusted split, which judge
  the training labels, serve as the transfer surrogate and calibrate the thresholds;
* :mod:`gdsec.audit.adaptive`: normalised logits (no severity can be bought by rescaling) and the
  adaptive attacks (BPDA, EOT, transfer) of the robustness verification, built from
  :mod:`gdsec.attacks.checks`;
* one module per question, each holding its check ``audit_<question>(model, split, config)``
  (:data:`AUDIT_CHECKS` maps each question to it):
  :mod:`~gdsec.audit.gradient_exposure`, :mod:`~gdsec.audit.adversarial_testing`,
  :mod:`~gdsec.audit.training_security`, :mod:`~gdsec.audit.robustness_verification` and
  :mod:`~gdsec.audit.convergence_properties`.

The checks call the course's tested tools rather than repeating them: the AutoAttack-style
:func:`gdsec.attacks.evaluate`, the poison scan of :mod:`gdsec.poisoning`, the checks of
:mod:`gdsec.attacks.checks` and the Lanczos sharpness of :mod:`gdsec.hessian`. Every check can be replaced
(``checks=``), which keeps tests fast and lets an auditor plug in a stronger test. A passing audit
is necessary, never sufficient: :data:`NOT_TESTED` lists what it does not test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import torch
from torch import nn

from gdsec.audit.adaptive import NormalisedLogits
from gdsec.audit.adversarial_testing import audit_adversarial_testing
from gdsec.audit.config import (
    EXPOSURES,
    POISON_METHODS,
    THRESHOLDS,
    AuditConfig,
    Check,
    configure,
)
from gdsec.audit.convergence_properties import audit_convergence_properties
from gdsec.audit.gradient_exposure import audit_gradient_exposure
from gdsec.audit.references import reference_models
from gdsec.audit.report import (
    NOT_TESTED,
    QUESTIONS,
    SEVERITIES,
    SEVERITY_COLOURS,
    AuditReport,
    Finding,
)
from gdsec.audit.robustness_verification import audit_robustness_verification
from gdsec.audit.training_security import audit_training_security, trigger_severity
from gdsec.data import Split
from gdsec.models import eval_mode
from gdsec.validation import check_batch, check_choice, check_labels, check_model

__all__ = [
    "AUDIT_CHECKS",
    "EXPOSURES",
    "NOT_TESTED",
    "POISON_METHODS",
    "QUESTIONS",
    "SEVERITIES",
    "SEVERITY_COLOURS",
    "THRESHOLDS",
    "AuditConfig",
    "AuditReport",
    "Check",
    "Finding",
    "NormalisedLogits",
    "audit",
    "audit_adversarial_testing",
    "audit_convergence_properties",
    "audit_gradient_exposure",
    "audit_robustness_verification",
    "audit_training_security",
    "configure",
    "reference_models",
    "trigger_severity",
]

#: The check that answers each question, in audit order.
AUDIT_CHECKS: dict[str, Check] = {
    "gradient_exposure": audit_gradient_exposure,
    "adversarial_testing": audit_adversarial_testing,
    "training_security": audit_training_security,
    "robustness_verification": audit_robustness_verification,
    "convergence_properties": audit_convergence_properties,
}

#: The default checks that use the clean reference models.
_USES_REFERENCES = ("training_security", "robustness_verification", "convergence_properties")


def _check_split(split: object) -> Split:
    """``split`` if it is a Split of finite inputs in [0, 1] (two rows or more) with matching labels."""
    if not isinstance(split, Split):
        raise ValueError(
            "split must be a gdsec.data.Split (x_train, y_train: the training data; "
            "x_test, y_test: trusted held-out data)"
        )
    for part in ("train", "test"):
        x = check_batch(f"split.x_{part}", getattr(split, f"x_{part}"), unit=True, min_rows=2)
        check_labels(f"split.y_{part}", getattr(split, f"y_{part}"), n=x.shape[0])
    return split


def _chosen_checks(checks: Mapping[str, Check] | None) -> dict[str, Check]:
    """The default checks with those of ``checks`` (keyed by question) swapped in."""
    chosen = dict(AUDIT_CHECKS)
    for key, fn in (checks or {}).items():
        check_choice("checks", key, tuple(QUESTIONS))
        if not callable(fn):
            raise ValueError(
                f"checks[{key!r}] must be a callable (model, split, config) -> Finding"
            )
        chosen[key] = fn
    return chosen


def _chosen_questions(questions: Sequence[str] | None) -> tuple[str, ...]:
    """The keys of ``QUESTIONS`` named in ``questions`` (all by default), in audit order."""
    if questions is None:
        return tuple(QUESTIONS)
    if isinstance(questions, str) or not questions:
        raise ValueError(
            f"questions must be a non-empty list of {tuple(QUESTIONS)}, got {questions!r}"
        )
    for key in questions:
        check_choice("questions", key, tuple(QUESTIONS))
    return tuple(q for q in QUESTIONS if q in questions)


def audit(
    model: nn.Module,
    split: Split,
    config: AuditConfig | None = None,
    *,
    name: str = "model",
    checks: Mapping[str, Check] | None = None,
    questions: Sequence[str] | None = None,
    progress: Callable[[str, Finding | None], None] | None = None,
    **settings: object,
) -> AuditReport:
    """Audit ``model`` against the five questions of ``QUESTIONS``; return an :class:`AuditReport`.

    ``split.x_train, split.y_train`` is the training data to scan; ``split.x_test, split.y_test`` is a
    trusted held-out sample the auditor controls (attacks are measured on all of it, or on its
    first ``n_eval`` rows). Unless ``config.references`` is given, ``config.n_references`` clean
    reference models are trained on it once and shared by the checks. ``config`` (default
    ``AuditConfig()``) holds the threat model, budgets and thresholds;
    ``settings`` override its fields by name (``audit(model, split, eps=0.2)``), and an unknown
    name raises ``ValueError``. ``checks`` replaces individual checks by key (each a callable
    ``(model, split, config) -> Finding``, :data:`AUDIT_CHECKS` by default). ``questions`` (keys
    of ``QUESTIONS``, default all) selects the questions answered, in audit order. ``progress`` is
    called with ``("references", None)`` before the references are trained, ``(question, None)``
    before each question and ``(question, finding)`` after it; an exception it raises stops the
    audit (a command's deadline). Neither the model nor the data is modified.

    Taught in chapter 10.
    """
    check_model("model", model)
    _check_split(split)
    config = configure(config, **settings)
    chosen = _chosen_checks(checks)
    keys = _chosen_questions(questions)
    if progress is not None and not callable(progress):
        raise ValueError("progress must be None or a callable (stage, finding or None) -> None")
    report = progress or (lambda stage, finding: None)
    stated = config.public()
    if config.references is None and any(
        q in keys and chosen[q] is AUDIT_CHECKS[q] for q in _USES_REFERENCES
    ):
        report("references", None)
        config = replace(
            config,
            references=reference_models(split, n_seeds=config.n_references, seed=config.seed),
        )
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    findings = []
    with eval_mode(model):
        for key in keys:
            report(key, None)
            finding = chosen[key](model, split, config)
            if (
                not isinstance(finding, Finding)
                or finding.question != key
                or finding.severity not in SEVERITIES
            ):
                raise ValueError(
                    f"checks[{key!r}] must return a Finding for {key!r} with a severity in {SEVERITIES}"
                )
            findings.append(finding)
            report(key, finding)
    if any(not torch.equal(v, state[k]) for k, v in model.state_dict().items()):
        raise RuntimeError("an audit check modified the model's parameters")
    return AuditReport(str(name), tuple(findings), stated)
