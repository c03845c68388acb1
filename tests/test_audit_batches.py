"""``AuditConfig.batch_size`` (``gdsec-audit --batch-size``) reaches the attacks: no attack call of
questions 1, 2, 4 or 5 sees more rows than the chunk, so memory is bounded by it (issue 20)."""

from __future__ import annotations

import pytest

from gdsec import audit, hessian
from gdsec.attacks import Budget, evaluate
from gdsec.audit import adaptive, convergence_properties, gradient_exposure

pytestmark = pytest.mark.unit

TINY = Budget(steps=2, fab_steps=2, square_steps=4, draws=2, check_rows=4)


def _spy(module, name: str, monkeypatch) -> list[int]:
    """Record the number of rows each call of ``module.name`` receives."""
    seen, real = [], getattr(module, name)

    def spy(model, x, *args, **kwargs):
        seen.append(x.shape[0])
        return real(model, x, *args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return seen


def test_question_1_attacks_in_chunks(digits, digits_mlp, monkeypatch):
    rows = {name: _spy(gradient_exposure, name, monkeypatch) for name in ("pgd", "square_attack")}
    config = audit.AuditConfig(n_eval=20, budget=TINY, eps_grid=(0.1,), batch_size=6)
    gradient_exposure.audit_gradient_exposure(digits_mlp, digits, config)
    for name, seen in rows.items():
        assert seen and max(seen) <= 6 and sum(seen) == 20, (name, seen)


def test_adaptive_attacks_in_chunks(digits, digits_mlp, monkeypatch):
    seen = _spy(adaptive, "apgd", monkeypatch)
    x, y = digits.x_test[:20], digits.y_test[:20]
    adaptive.adaptive_robust(
        digits_mlp,
        x,
        y,
        0.1,
        standing=digits_mlp(x).argmax(1) == y,
        surrogate=digits_mlp,
        budget=TINY,
        randomised=False,
        signs=False,
        batch_size=4,
    )
    assert seen and max(seen) <= 4


def test_sharpness_in_chunks(digits, digits_mlp, monkeypatch):
    seen = []
    real = hessian.curvature

    def spy(*args, batch_size=None, **kwargs):
        seen.append(batch_size)
        return real(*args, batch_size=batch_size, **kwargs)

    monkeypatch.setattr(hessian, "curvature", spy)
    config = audit.AuditConfig(
        n_eval=20, budget=TINY, sharpness_rows=32, n_references=1, batch_size=8
    )
    convergence_properties.audit_convergence_properties(digits_mlp, digits, config)
    assert seen and set(seen) == {8}


def test_evaluate_attacks_in_chunks(digits, digits_mlp, monkeypatch):
    from gdsec.attacks import ensemble

    seen, real = [], ensemble.Member.run

    def spy(self, model, x, *args, **kwargs):
        seen.append(x.shape[0])
        return real(self, model, x, *args, **kwargs)

    monkeypatch.setattr(ensemble.Member, "run", spy)
    x, y = digits.x_test[:20], digits.y_test[:20]
    chunked = evaluate(digits_mlp, x, y, 0.1, budget=TINY, batch_size=6)
    assert seen and max(seen) <= 6
    seen.clear()
    whole = evaluate(digits_mlp, x, y, 0.1, budget=TINY)
    assert max(seen) > 6 and chunked.clean_accuracy == whole.clean_accuracy
