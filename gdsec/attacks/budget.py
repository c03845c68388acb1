"""The attack budget, written once: how hard :func:`gdsec.attacks.evaluate`, the masking sanity checks
and the audit attack, passed down from the audit to both as one frozen :class:`Budget`."""

from __future__ import annotations

from dataclasses import dataclass, fields

from gdsec.validation import check_int

__all__ = ["BUDGETS", "Budget"]


@dataclass(frozen=True)
class Budget:
    """How hard to attack: iteration counts, restarts, random draws and the rows the checks attack.

    ``steps``: iterations of every gradient attack (APGD-CE and APGD-T in :func:`evaluate`, the PGD
    under test in :func:`gdsec.masking.sanity_checks`, PGD and APGD in the audit); ``restarts``:
    random restarts of APGD and FAB; ``fab_steps``: iterations of FAB-T; ``square_steps``:
    iterations of the Square Attack, one query per row each; ``draws``: forward passes averaged
    (EOT) when the model is randomised; ``noise_points``: random points of the ball the sanity
    checks' noise baseline tries; ``check_rows``: the rows the eps-monotonicity re-run of
    :func:`evaluate` attacks (0 skips it) and the audit's DeepFool median measures. The defaults
    are AutoAttack's standard budget (Croce & Hein 2020). Every field is checked when the budget
    is built; a bad value raises ``ValueError`` naming it. Taught in chapter 8.
    """

    steps: int = 100
    restarts: int = 1
    fab_steps: int = 100
    square_steps: int = 5000
    draws: int = 20
    noise_points: int = 20
    check_rows: int = 100

    def __post_init__(self) -> None:
        for field in fields(self):
            check_int(
                field.name, getattr(self, field.name), low=0 if field.name == "check_rows" else 1
            )

    def stated(self) -> dict[str, int]:
        """Every field by name (what a report states it ran with). Used in chapter 10."""
        return {field.name: getattr(self, field.name) for field in fields(self)}


#: Named budgets: ``standard`` is AutoAttack's (releases), ``quick`` a smoke test that runs in seconds.
BUDGETS: dict[str, Budget] = {
    "standard": Budget(),
    "quick": Budget(steps=5, fab_steps=5, square_steps=50, draws=4, check_rows=16),
}
