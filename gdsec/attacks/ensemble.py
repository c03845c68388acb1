"""The ensemble :func:`gdsec.attacks.evaluate` runs: each :class:`Member` an attack of the registry
(:data:`gdsec.attacks.ATTACK_SPECS`) with the settings it fixes, its budget from a :class:`Budget`."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from gdsec.attacks.budget import Budget
from gdsec.attacks.registry import ATTACK_SPECS
from gdsec.validation import check_keywords

__all__ = ["ENSEMBLE", "Member", "check_members"]


@dataclass(frozen=True)
class Member:
    """One attack of an ensemble: a registry name, the settings it fixes, and a variant for its label.

    Its ``label`` is ``attack`` (``attack-variant`` when two members share a registry entry). The
    budget (steps, restarts) comes from :class:`Budget` when the ensemble runs. Taught in chapter 8.
    """

    attack: str
    settings: dict[str, object] = field(default_factory=dict)
    variant: str = ""

    def __post_init__(self) -> None:
        if self.attack not in ATTACK_SPECS or not ATTACK_SPECS[self.attack].bounded:
            bounded = [name for name, spec in ATTACK_SPECS.items() if spec.bounded]
            raise ValueError(
                f"attack must be a bounded attack of ATTACK_SPECS, one of {bounded}, got {self.attack!r}"
            )
        check_keywords(self.attack, self.settings, ATTACK_SPECS[self.attack].settings)

    @property
    def label(self) -> str:
        """The member's name in an :class:`Evaluation`: the registry name, plus the variant if any."""
        return f"{self.attack}-{self.variant}" if self.variant else self.attack

    def run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: float,
        norm: str,
        budget: Budget,
        seed: int,
    ) -> torch.Tensor:
        """The member's attack through the registry, with its settings and its part of ``budget``."""
        return ATTACK_SPECS[self.attack].fn(
            model, x, y, eps, **self.budgeted(norm, budget), seed=seed
        )

    def budgeted(self, norm: str, budget: Budget) -> dict[str, object]:
        """The settings it runs with: its own, ``norm`` where the attack takes one, its budget."""
        own = {"norm": norm} if "norm" in ATTACK_SPECS[self.attack].settings else {}
        steps = {
            "apgd": budget.steps,
            "fab": budget.fab_steps,
            "square_attack": budget.square_steps,
        }.get(self.attack, budget.steps)
        restarts = (
            {"restarts": budget.restarts}
            if "restarts" in ATTACK_SPECS[self.attack].settings
            else {}
        )
        return {**own, **self.settings, "steps": steps, **restarts}


#: The standard ensemble, in the order it runs.
ENSEMBLE = (
    Member("apgd", {"loss": "ce"}, "ce"),
    Member("apgd", {"targeted": True}, "t"),
    Member("fab", {"targeted": True}, "t"),
    Member("square_attack", {"p_init": 0.8}),
)
_BY_LABEL = {member.label: member for member in ENSEMBLE}


def check_members(attacks: object, norm: str) -> tuple[Member, ...]:
    """``attacks`` (labels of :data:`ENSEMBLE` or :class:`Member` records) as distinct members.

    Used in chapters 6 and 8.
    """
    labels = list(_BY_LABEL)
    if isinstance(attacks, str) or not isinstance(attacks, tuple | list) or not attacks:
        raise ValueError(
            f"attacks must be a non-empty tuple of members or labels from {labels}, got {attacks!r}"
        )
    unknown = [a for a in attacks if not isinstance(a, Member) and a not in _BY_LABEL]
    if unknown:
        raise ValueError(f"attacks must be Member records or labels from {labels}, got {unknown!r}")
    members = tuple(a if isinstance(a, Member) else _BY_LABEL[a] for a in attacks)
    if len({m.label for m in members}) != len(members):
        raise ValueError(f"attacks must have distinct labels, got {[m.label for m in members]}")
    if norm != "inf" and any("norm" not in ATTACK_SPECS[m.attack].settings for m in members):
        raise ValueError(
            "attacks may include square_attack only with norm='inf' (the Square Attack here is L-infinity)"
        )
    return members
