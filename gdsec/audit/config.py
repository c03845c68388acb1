"""The audit's settings: threat model, attack budgets and the thresholds behind the severities.

:class:`AuditConfig` validates every field when it is built, so a bad setting fails before any
check runs; :func:`configure` applies named settings to a config and rejects unknown names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace

import torch
from torch import nn

from gdsec.audit.report import Finding
from gdsec.data import Split
from gdsec.validation import check_choice, check_int, check_keywords, check_model, check_number

__all__ = ["EXPOSURES", "POISON_METHODS", "THRESHOLDS", "AuditConfig", "Check", "configure", "eval_rows"]

#: What a deployed model may return to its callers, from least to most revealing.
EXPOSURES = ("labels", "scores", "logits", "gradients")
#: The poison scans of :func:`gdsec.poisoning.detect_poison` the training-security check can use.
POISON_METHODS = ("loss", "spectral")
#: The fields of :class:`AuditConfig` that set a check's threshold rather than the threat model.
THRESHOLDS = ("trigger_pixels", "sharpness_rows", "gradient_tol", "generalisation_gap")


def _check_grid(eps_grid: object) -> tuple[float, ...]:
    """``eps_grid`` as a non-empty tuple of budgets in (0, 1]."""
    if isinstance(eps_grid, str) or not isinstance(eps_grid, tuple | list):
        raise ValueError(f"eps_grid must be a tuple of budgets in (0, 1], got {eps_grid!r}")
    grid = tuple(check_number("eps_grid", e, low=0.0, high=1.0, low_open=True) for e in eps_grid)
    if not grid:
        raise ValueError("eps_grid must list at least one budget in (0, 1]")
    return grid


@dataclass(frozen=True)
class AuditConfig:
    """The audit's settings: threat model, budgets and thresholds (all stated in the report).

    Every field is checked when the config is built; a bad value raises ``ValueError`` naming it.

    Taught in chapter 10.
    """

    exposure: str = "logits"
    eps: float = 0.1
    eps_grid: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3)
    n_eval: int = 200
    pgd_steps: int = 20
    queries: int = 300
    expected_fraction: float = 0.05
    poison_method: str = "loss"
    reference: nn.Module | None = None
    surrogate: nn.Module | None = None
    trigger_pixels: int = 4
    sharpness_rows: int = 500
    gradient_tol: float = 0.1
    generalisation_gap: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("exposure", self.exposure, EXPOSURES)
        object.__setattr__(self, "eps", check_number("eps", self.eps, low=0.0, high=1.0, low_open=True))
        object.__setattr__(self, "eps_grid", _check_grid(self.eps_grid))
        for name in ("n_eval", "pgd_steps", "queries", "trigger_pixels", "sharpness_rows"):
            check_int(name, getattr(self, name), low=1)
        check_number("expected_fraction", self.expected_fraction, low=0.0, high=1.0, low_open=True)
        check_choice("poison_method", self.poison_method, POISON_METHODS)
        for name in ("reference", "surrogate"):
            if getattr(self, name) is not None:
                check_model(name, getattr(self, name))
        check_number("gradient_tol", self.gradient_tol, low=0.0)
        check_number("generalisation_gap", self.generalisation_gap, low=0.0, high=1.0)
        check_int("seed", self.seed, low=0)

    def public(self) -> dict[str, object]:
        """The settings worth printing (models are named, not dumped)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("reference", "surrogate")}
        out["reference"] = "given" if self.reference is not None else "trained on the trusted split"
        out["surrogate"] = "given" if self.surrogate is not None else "none"
        return out


#: A check answers one question: ``(model, data, config) -> Finding``.
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


def eval_rows(data: Split, config: AuditConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``config.n_eval`` rows of the held-out split, on which attacks are measured.

    Taught in chapter 10.
    """
    n = min(config.n_eval, data.x_test.shape[0])
    return data.x_test[:n], data.y_test[:n]

