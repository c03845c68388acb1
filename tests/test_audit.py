"""Unit tests for gdsec.audit.audit, the orchestrator: checks by question, settings, model untouched, bad input."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import torch

from gdsec import audit, data, models

PACKAGE = Path(audit.__file__).parent


def _fake(question: str, severity: str = "low") -> audit.Check:
    def check(model, data_, config):
        return audit.Finding(
            question, severity, f"fake {question}", {"value": 1.0, "eps": config.eps}, "nothing"
        )

    return check


FAKES = {q: _fake(q) for q in audit.QUESTIONS}


def test_audit_with_injected_checks_builds_a_complete_report(digits, digits_mlp):
    checks = {**FAKES, "training_security": _fake("training_security", "high")}
    report = audit.audit(digits_mlp, digits, name="demo", eps=0.2, checks=checks)
    assert [f.question for f in report.findings] == list(audit.QUESTIONS)
    assert report.worst == "high" and report.severities["training_security"] == "high"
    assert report.finding("adversarial_testing").evidence["eps"] == 0.2
    assert (
        report.settings["eps"] == 0.2
        and report.settings["reference"] == "trained on the trusted split"
    )
    with pytest.raises(ValueError, match="question"):
        report.finding("nonsense")


def test_settings_override_the_config_through_one_code_path(digits, digits_mlp):
    config = audit.AuditConfig(eps=0.2, n_eval=30)
    from_config = audit.audit(digits_mlp, digits, config, checks=FAKES)
    from_settings = audit.audit(digits_mlp, digits, eps=0.2, n_eval=30, checks=FAKES)
    assert from_config.settings == from_settings.settings
    overridden = audit.audit(digits_mlp, digits, config, n_eval=40, checks=FAKES)
    assert overridden.settings["n_eval"] == 40 and overridden.settings["eps"] == 0.2
    assert config.n_eval == 30, "the caller's config must not change"
    assert audit.audit(digits_mlp, digits, checks=FAKES).settings == audit.AuditConfig().public()


@pytest.mark.integration
def test_audit_trains_the_references_once_and_shares_them(digits, digits_mlp):
    seen = []

    def spy(question):
        def check(model, data_, config):
            seen.append(config.references)
            return _fake(question)(model, data_, config)

        return check

    checks = {
        **FAKES,
        "training_security": spy("training_security"),
        "convergence_properties": spy("convergence_properties"),
    }
    audit.audit(digits_mlp, digits, checks=checks, n_references=2)
    assert seen == [None, None], "references are trained only when a default check needs them"
    checks = {
        **FAKES,
        "training_security": audit.audit_training_security,
        "convergence_properties": spy("convergence_properties"),
    }
    report = audit.audit(digits_mlp, digits, checks=checks, n_references=2)
    assert len(seen[-1]) == 2 and report.settings["references"] == "2 trained on the trusted split"


def test_audit_leaves_the_model_untouched_and_rejects_a_meddling_check(digits, digits_mlp):
    model = copy.deepcopy(digits_mlp)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    audit.audit(model, digits, checks=FAKES)
    assert model.training and all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())

    def meddle(model_, data_, config):
        with torch.no_grad():
            next(model_.parameters()).add_(1.0)
        return _fake("convergence_properties")(model_, data_, config)

    with pytest.raises(RuntimeError, match="modified"):
        audit.audit(models.mlp(seed=0), digits, checks={**FAKES, "convergence_properties": meddle})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"exposure": "weights"}, "exposure"),
        ({"eps": 0.0}, "eps"),
        ({"eps": 1.5}, "eps"),
        ({"eps_grid": ()}, "eps_grid"),
        ({"eps_grid": (0.1, -0.2)}, "eps_grid"),
        ({"n_eval": 0}, "n_eval"),
        ({"budget": {"steps": 3}}, "budget"),
        ({"queries": 0}, "unknown setting.*queries"),
        ({"expected_fraction": 0.0}, "expected_fraction"),
        ({"poison_method": "magic"}, "poison_method"),
        ({"reference": "model"}, "reference"),
        ({"seed": -1}, "seed"),
        ({"sharpness_ratio": -1.0}, "sharpness_ratio"),
        ({"colour": 1.0}, "unknown setting.*colour"),
        ({"config": {"eps": 0.1}}, "config"),
        ({"checks": {"speed": _fake("speed")}}, "checks"),
        ({"checks": {"training_security": 3}}, "checks"),
        ({"checks": {"training_security": _fake("adversarial_testing")}}, "training_security"),
        ({"checks": {"training_security": _fake("training_security", "critical")}}, "severity"),
    ],
)
def test_audit_rejects_bad_arguments(digits, digits_mlp, kwargs, match):
    options = {"checks": FAKES, **kwargs}
    if "checks" in kwargs:
        options["checks"] = {**FAKES, **kwargs["checks"]}
    with pytest.raises(ValueError, match=match):
        audit.audit(digits_mlp, digits, **options)


def test_audit_rejects_bad_models_and_data(digits, digits_mlp):
    with pytest.raises(ValueError, match="model"):
        audit.audit("model", digits, checks=FAKES)
    with pytest.raises(ValueError, match="split"):
        audit.audit(digits_mlp, (digits.x_train, digits.y_train), checks=FAKES)
    bad = data.Split(digits.x_train * 2, digits.y_train, digits.x_test, digits.y_test)
    with pytest.raises(ValueError, match="x_train"):
        audit.audit(digits_mlp, bad, checks=FAKES)
    bad = data.Split(digits.x_train, digits.y_train[:-1], digits.x_test, digits.y_test)
    with pytest.raises(ValueError, match="y_train"):
        audit.audit(digits_mlp, bad, checks=FAKES)
    bad = data.Split(digits.x_train, digits.y_train, digits.x_test[:1], digits.y_test[:1])
    with pytest.raises(ValueError, match="x_test"):
        audit.audit(digits_mlp, bad, checks=FAKES)


def test_the_package_keeps_its_public_names():
    names = (
        "QUESTIONS",
        "EXPOSURES",
        "SEVERITIES",
        "AuditConfig",
        "AuditReport",
        "Finding",
        "reference_models",
    )
    names += tuple(fn.__name__ for fn in audit.AUDIT_CHECKS.values())
    assert all(hasattr(audit, n) and n in audit.__all__ for n in names)
    assert list(audit.AUDIT_CHECKS) == list(audit.QUESTIONS)
    assert all(fn.__name__ == f"audit_{q}" for q, fn in audit.AUDIT_CHECKS.items())
    assert not any(hasattr(audit, n) for n in ("DEFAULT_CHECKS", "reference_model", "BUDGETS"))


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_audit_modules_are_short_and_import_at_top_level(path):
    source = path.read_text()
    assert len(source.splitlines()) <= 300, f"{path.name} is over 300 lines"
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            inner = [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
            assert not inner, f"{path.name}: lazy import in {node.name}"
    assert "importlib" not in source and "__getattr__" not in source
