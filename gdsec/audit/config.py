"""The audit's settings: threat model, attack budgets and the thresholds behind the severities.

:class:`AuditConfig` validates every field when it is built, so a bad setting fails before any
check runs; :func:`configure` applies named settings to a config and rejects unknown names;
:func:`provenance` is the record every finding carries (sample size, budgets, library version).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import torch
from torch import nn

from gdsec import __version__
from gdsec.attacks import BUDGETS, Budget
from gdsec.attacks.batches import check_batch_size
from gdsec.audit.report import Finding
from gdsec.data import Split
from gdsec.validation import check_choice, check_int, check_keywords, check_model, check_number

__all__ = [
    "EXPOSURES",
    "POISON_METHODS",
    "THRESHOLDS",
    "AuditConfig",
    "Check",
    "configure",
    "eval_rows",
    "provenance",
]

#: What a deployed model may return to its callers, from least to most revealing.
EXPOSURES = ("labels", "scores", "logits", "gradients")
#: The poison scans of :func:`gdsec.poisoning.detect_poison` the training-security check can use.
POISON_METHODS = ("loss", "spectral")
#: The fields of :class:`AuditConfig` that set a check's threshold rather than the threat model.
THRESHOLDS = (
    "scan_quantile",
    "label_margin",
    "trigger_sizes",
    "trigger_margin",
    "trigger_high",
    "adaptive_tol",
    "sharpness_rows",
    "sharpness_ratio",
    "generalisation_gap",
)


def _check_grid(eps_grid: object) -> tuple[float, ...]:
    """``eps_grid`` as a non-empty tuple of budgets in (0, 1]."""
    if isinstance(eps_grid, str) or not isinstance(eps_grid, tuple | list):
        raise ValueError(f"eps_grid must be a tuple of budgets in (0, 1], got {eps_grid!r}")
    grid = tuple(check_number("eps_grid", e, low=0.0, high=1.0, low_open=True) for e in eps_grid)
    if not grid:
        raise ValueError("eps_grid must list at least one budget in (0, 1]")
    return grid


def _check_sizes(sizes: object) -> tuple[int, ...]:
    """``sizes`` as a non-empty tuple of trigger feature counts (each at least 1)."""
    if isinstance(sizes, str) or not isinstance(sizes, tuple | list) or not sizes:
        raise ValueError(
            f"trigger_sizes must be a non-empty tuple of feature counts, got {sizes!r}"
        )
    return tuple(check_int("trigger_sizes", n, low=1) for n in sizes)


def _check_references(references: object) -> tuple[nn.Module, ...] | None:
    """``references`` as a non-empty tuple of models, or None."""
    if references is None:
        return None
    if (
        isinstance(references, nn.Module)
        or not isinstance(references, tuple | list)
        or not references
    ):
        raise ValueError(
            "references must be None or a non-empty tuple of clean models trained on the trusted split"
        )
    return tuple(check_model("references", r) for r in references)


@dataclass(frozen=True)
class AuditConfig:
    """The audit's settings: threat model, budgets and thresholds (all stated in the report).

    ``n_eval=None`` measures attacks on the whole trusted split. ``batch_size`` is how many rows
    an attack takes at a time (``None``: all at once): every attack of questions 1, 2 and 4 and
    question 5's Hessian-vector products run in chunks of it
    (:func:`gdsec.attacks.batches.in_batches`), so memory is bounded by the batch, not the split
    (a randomised attack restarts its stream in each chunk). ``budget`` (a
    :class:`gdsec.attacks.Budget`, AutoAttack's by default) is passed down to every attack the
    checks run, :func:`gdsec.attacks.evaluate` included. ``references`` are clean models
    trained on the trusted split (several seeds) that calibrate the thresholds and serve as the
    transfer surrogate; ``None`` lets :func:`gdsec.audit.audit` train ``n_references`` of them (one per seed).
    ``surrogate`` defaults to the first of them; ``reference``, if given, replaces the references'
    mean as question 3's judge of the training rows.
    Question 3 (training security): the loss scan flags training rows whose loss under the
    references exceeds the ``scan_quantile`` quantile of what reference-like models show on
    held-out trusted rows (a data-driven count; ``expected_fraction`` is only the spectral scan's
    bound on the poisoned share); a class whose labels the references dispute ``label_margin``
    more often than they err on held-out trusted rows is a label-poisoning pattern ("medium").
    Triggers are rebuilt from the flagged rows at each feature count of ``trigger_sizes`` (capped
    at the row size); the one that moves the most rows beyond the strictest clean reference
    counts. A rebuilt trigger or a class-to-class flip is "medium" when it moves ``trigger_margin``
    more rows than it moves on any clean reference, "high" from ``trigger_high`` (and half of the
    rows) on.
    Every field is checked when the config is built; a bad value raises ``ValueError`` naming it.

    Taught in chapter 10.
    """

    exposure: str = "logits"
    eps: float = 0.1
    eps_grid: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3)
    n_eval: int | None = None
    batch_size: int | None = None
    budget: Budget = BUDGETS["standard"]
    expected_fraction: float = 0.05
    poison_method: str = "loss"
    reference: nn.Module | None = None
    surrogate: nn.Module | None = None
    references: tuple[nn.Module, ...] | None = None
    n_references: int = 3
    scan_quantile: float = 0.99
    label_margin: float = 0.1
    trigger_sizes: tuple[int, ...] = (4, 9, 16, 36, 64)
    trigger_margin: float = 0.35
    trigger_high: float = 0.5
    adaptive_tol: float = 0.05
    sharpness_rows: int = 500
    sharpness_ratio: float = 10.0
    generalisation_gap: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("exposure", self.exposure, EXPOSURES)
        object.__setattr__(
            self, "eps", check_number("eps", self.eps, low=0.0, high=1.0, low_open=True)
        )
        object.__setattr__(self, "eps_grid", _check_grid(self.eps_grid))
        if self.n_eval is not None:
            check_int("n_eval", self.n_eval, low=1)
        check_batch_size("batch_size", self.batch_size)
        if not isinstance(self.budget, Budget):
            raise ValueError(
                f"budget must be a gdsec.attacks.Budget, got {type(self.budget).__name__}"
            )
        check_int("budget.check_rows", self.budget.check_rows, low=1)
        check_int("n_references", self.n_references, low=1)
        check_int("sharpness_rows", self.sharpness_rows, low=1)
        object.__setattr__(self, "trigger_sizes", _check_sizes(self.trigger_sizes))
        check_number("scan_quantile", self.scan_quantile, low=0.5, high=1.0)
        check_number("label_margin", self.label_margin, low=0.0, high=1.0, low_open=True)
        check_number("expected_fraction", self.expected_fraction, low=0.0, high=1.0, low_open=True)
        check_choice("poison_method", self.poison_method, POISON_METHODS)
        for name in ("reference", "surrogate"):
            if getattr(self, name) is not None:
                check_model(name, getattr(self, name))
        object.__setattr__(self, "references", _check_references(self.references))
        check_number("trigger_margin", self.trigger_margin, low=0.0, high=1.0, low_open=True)
        check_number("trigger_high", self.trigger_high, low=self.trigger_margin, high=1.0)
        check_number("adaptive_tol", self.adaptive_tol, low=0.0, high=1.0)
        check_number("sharpness_ratio", self.sharpness_ratio, low=1.0)
        check_number("generalisation_gap", self.generalisation_gap, low=0.0, high=1.0)
        check_int("seed", self.seed, low=0)

    def public(self) -> dict[str, object]:
        """The settings worth printing (models are named, not dumped), with the library version."""
        models = ("reference", "surrogate", "references")
        out: dict[str, object] = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name not in models
        }
        trained = f"{self.n_references} trained on the trusted split"
        out["n_eval"] = "all" if self.n_eval is None else self.n_eval
        out["batch_size"] = "all" if self.batch_size is None else self.batch_size
        out["budget"] = self.budget.stated()
        out["references"] = (
            f"{len(self.references)} given" if self.references is not None else trained
        )
        out["reference"] = "given" if self.reference is not None else "trained on the trusted split"
        out["surrogate"] = (
            "given"
            if self.surrogate is not None
            else "the first reference (trained on the trusted split)"
        )
        out["gdsec_version"] = __version__
        return out


#: A check answers one question: ``(model, split, config) -> Finding``.
Check = Callable[[nn.Module, Split, AuditConfig], Finding]


def configure(config: AuditConfig | None = None, **settings: object) -> AuditConfig:
    """``config`` (default ``AuditConfig()``) with ``settings`` replacing its fields, all validated.

    Unknown setting names raise ``ValueError`` naming them.

    Taught in chapter 10.
    """
    if config is None:
        config = AuditConfig()
    if not isinstance(config, AuditConfig):
        raise ValueError(f"config must be an AuditConfig, got {type(config).__name__}")
    check_keywords("audit", settings, [f.name for f in fields(AuditConfig)])
    return replace(config, **settings) if settings else config


def eval_rows(split: Split, config: AuditConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The trusted rows attacks are measured on: all of them, or the first ``config.n_eval``.

    Taught in chapter 10.
    """
    n = (
        split.x_test.shape[0]
        if config.n_eval is None
        else min(config.n_eval, split.x_test.shape[0])
    )
    return split.x_test[:n], split.y_test[:n]


def provenance(
    n: int, config: AuditConfig, budgets: tuple[str, ...] | None = None
) -> dict[str, object]:
    """The record every finding carries: sample size ``n``, the budgets used, the gdsec version.

    ``budgets`` names the fields of ``config.budget`` (or of ``config``) the finding used; all of
    ``config.budget`` by default. Taught in chapter 10.
    """
    stated = config.budget.stated()
    names = tuple(stated) if budgets is None else budgets
    used = {b: stated[b] if b in stated else getattr(config, b) for b in names}
    return {"n": int(n), "budgets": used, "gdsec_version": __version__}
