"""Unit tests for gdsec.audit: the five checks, the report object and its exports, the explorer."""

from __future__ import annotations

import json
import math

import pytest
import torch

from gdsec import audit, data, masking, models, poisoning, train
from gdsec.widgets.audit import audit_explorer, plot_report

FAST = dict(eps_grid=(0.1,), n_eval=60, pgd_steps=5, queries=60, seed=0)


def _fit(x: torch.Tensor, y: torch.Tensor) -> torch.nn.Module:
    model = models.mlp(seed=0)
    train.train(model, x, y, optimizer="adam", lr=0.01, epochs=20, batch_size=64, progress=False)
    return model


@pytest.fixture(scope="module")
def split() -> data.Split:
    return data.load_digits()


@pytest.fixture(scope="module")
def clean(split) -> torch.nn.Module:
    return _fit(split.x_train, split.y_train)


@pytest.fixture(scope="module")
def poisoned(split) -> tuple[torch.nn.Module, data.Split, torch.Tensor]:
    x_p, y_p, index = poisoning.add_backdoor(split.x_train, split.y_train, target=3, fraction=0.05, seed=0)
    return _fit(x_p, y_p), data.Split(x_p, y_p, split.x_test, split.y_test), index


@pytest.fixture(scope="module")
def reference(split) -> torch.nn.Module:
    return audit.reference_model(split, seed=0)


def _fake(question: str, severity: str = "low") -> audit.Check:
    def check(model, data_, config):
        return audit.Finding(question, severity, f"fake {question}", {"value": 1.0, "eps": config.eps}, "nothing")

    return check


FAKES = {q: _fake(q) for q in audit.QUESTIONS}


def test_audit_with_injected_checks_builds_a_complete_report(split, clean):
    checks = {**FAKES, "training_security": _fake("training_security", "high")}
    report = audit.audit(clean, split, name="demo", eps=0.2, checks=checks)
    assert [f.question for f in report.findings] == list(audit.QUESTIONS)
    assert report.worst == "high" and report.severities["training_security"] == "high"
    assert report.finding("adversarial_testing").evidence["eps"] == 0.2
    assert report.settings["eps"] == 0.2 and report.settings["reference"] == "trained on the trusted split"
    with pytest.raises(ValueError, match="question"):
        report.finding("nonsense")


def test_report_exports_markdown_json_and_html(split, clean):
    evidence = {"inf": math.inf, "curve": {"0.1": 0.5}, "long": list(range(20)), "flag": True}
    checks = {**FAKES, "gradient_exposure": lambda m, d, c: audit.Finding("gradient_exposure", "medium", "a | b", evidence, "fix")}
    report = audit.audit(clean, split, name="exports <model>", checks=checks)
    markdown = report.to_markdown()
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table) == 6 and "**medium**" in markdown and "a / b" in markdown
    assert "long =" not in markdown  # long evidence lists stay out of the table
    parsed = json.loads(report.to_json())
    assert parsed["findings"][0]["evidence"]["inf"] == "inf" and len(parsed["findings"][0]["evidence"]["long"]) == 20
    page = report._repr_html_()
    assert page.count("<tr") == 6 and "exports &lt;model&gt;" in page and "medium" in page


def test_real_audit_tells_clean_backdoored_and_masked_apart(split, clean, poisoned, reference):
    backdoored, poisoned_split, _ = poisoned
    masked = masking.defend(clean, "temperature", temperature=1000.0)
    reports = {
        "clean": audit.audit(clean, split, reference=reference, **FAST),
        "backdoored": audit.audit(backdoored, poisoned_split, reference=reference, **FAST),
        "masked": audit.audit(masked, split, reference=reference, **FAST),
    }
    assert reports["clean"].severities["training_security"] == "low"
    assert reports["backdoored"].severities["training_security"] == "high"
    assert reports["clean"].severities["robustness_verification"] == "low"
    assert reports["masked"].severities["robustness_verification"] == "high"
    assert reports["masked"].finding("robustness_verification").evidence["masked"] is True
    for report in reports.values():
        json.loads(report.to_json())


def test_training_security_rebuilds_the_planted_trigger(poisoned, reference):
    backdoored, poisoned_split, index = poisoned
    config = audit.AuditConfig(reference=reference)
    finding = audit.check_training_security(backdoored, poisoned_split, config)
    planted = torch.nonzero(poisoning.apply_trigger(torch.zeros(1, 1, 8, 8)).flatten()).flatten().tolist()
    assert finding.evidence["trigger_class"] == 3 and finding.evidence["suspected_class"] == 3
    assert sorted(finding.evidence["trigger_features"]) == planted
    assert finding.evidence["trigger_success"] > 0.5
    assert len(set(finding.evidence["flagged_index"]) & set(index.tolist())) > 0.6 * len(index)


def test_gradient_exposure_levels(split, clean):
    severities = {}
    for exposure in audit.EXPOSURES:
        config = audit.AuditConfig(exposure=exposure, n_eval=60, pgd_steps=5, queries=60)
        finding = audit.check_gradient_exposure(clean, split, config)
        severities[exposure] = finding.severity
        assert ("dlg_reconstruction_mse" in finding.evidence) == (exposure == "gradients")
    assert severities["gradients"] == "high"
    order = audit.SEVERITIES.index
    assert order(severities["labels"]) <= order(severities["scores"]) <= order(severities["gradients"])


def test_adversarial_testing_takes_the_worst_case(split, clean):
    masked = masking.defend(clean, "temperature", temperature=1000.0)
    config = audit.AuditConfig(eps_grid=(0.1, 0.3), n_eval=60, pgd_steps=5, queries=100)
    finding = audit.check_adversarial_testing(masked, split, config)
    assert set(finding.evidence["robust_accuracy_by_eps"]) == {"0.1", "0.3"}
    assert finding.evidence["strongest_attack_by_eps"]["0.3"] == "square"
    assert finding.evidence["robust_accuracy_by_eps"]["0.3"] < 0.2


def test_convergence_properties_of_a_trained_model(split, clean):
    finding = audit.check_convergence_properties(clean, split, audit.AuditConfig(sharpness_rows=200))
    assert finding.severity == "low"
    assert finding.evidence["final_loss"] < 0.2 and finding.evidence["sharpness"] > 0
    assert all(p.grad is None for p in clean.parameters())


def test_audit_leaves_the_model_untouched_and_rejects_a_meddling_check(split, clean):
    saved = {k: v.clone() for k, v in clean.state_dict().items()}
    clean.train()
    audit.audit(clean, split, checks=FAKES)
    assert clean.training and all(torch.equal(v, saved[k]) for k, v in clean.state_dict().items())
    clean.eval()

    def meddle(model, data_, config):
        with torch.no_grad():
            next(model.parameters()).add_(1.0)
        return _fake("convergence_properties")(model, data_, config)

    model = models.mlp(seed=0)
    with pytest.raises(RuntimeError, match="modified"):
        audit.audit(model, split, checks={**FAKES, "convergence_properties": meddle})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"exposure": "weights"}, "exposure"),
        ({"eps": 0.0}, "eps"),
        ({"eps": 1.5}, "eps"),
        ({"eps_grid": ()}, "eps_grid"),
        ({"eps_grid": (0.1, -0.2)}, "eps_grid"),
        ({"n_eval": 0}, "n_eval"),
        ({"queries": 0}, "queries"),
        ({"expected_fraction": 0.0}, "expected_fraction"),
        ({"poison_method": "magic"}, "poison_method"),
        ({"reference": "model"}, "reference"),
        ({"seed": -1}, "seed"),
        ({"colour": 1.0}, "unknown settings"),
        ({"checks": {"speed": _fake("speed")}}, "checks"),
        ({"checks": {"training_security": 3}}, "checks"),
        ({"checks": {"training_security": _fake("adversarial_testing")}}, "training_security"),
        ({"checks": {"training_security": _fake("training_security", "critical")}}, "severity"),
    ],
)
def test_audit_rejects_bad_arguments(split, clean, kwargs, match):
    options = {"checks": FAKES, **kwargs}
    if "checks" in kwargs:
        options["checks"] = {**FAKES, **kwargs["checks"]}
    with pytest.raises(ValueError, match=match):
        audit.audit(clean, split, **options)


def test_audit_rejects_bad_models_and_data(split, clean):
    with pytest.raises(ValueError, match="model"):
        audit.audit("model", split, checks=FAKES)
    with pytest.raises(ValueError, match="data"):
        audit.audit(clean, (split.x_train, split.y_train), checks=FAKES)
    bad = data.Split(split.x_train * 2, split.y_train, split.x_test, split.y_test)
    with pytest.raises(ValueError, match="x_train"):
        audit.audit(clean, bad, checks=FAKES)
    bad = data.Split(split.x_train, split.y_train[:-1], split.x_test, split.y_test)
    with pytest.raises(ValueError, match="y_train"):
        audit.audit(clean, bad, checks=FAKES)


def test_reconstruct_trigger_and_stamp():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(40, 1, 4, 4, generator=generator) * 0.5
    y = torch.arange(40) % 4
    x[y == 2, 0, 0, 0] = 1.0
    x[y == 2, 0, 3, 3] = 1.0
    flagged = torch.nonzero(y == 2).flatten()[:5]
    pixels = audit.reconstruct_trigger(x, y, flagged, 2, pixels=2)
    assert pixels.tolist() == [0, 15]
    stamped = audit.stamp(x[:3], pixels)
    assert stamped[:, 0, 0, 0].eq(1).all() and stamped[:, 0, 3, 3].eq(1).all() and not torch.equal(stamped, x[:3])
    with pytest.raises(ValueError, match="flagged"):
        audit.reconstruct_trigger(x, y, flagged, 1)
    with pytest.raises(ValueError, match="pixels"):
        audit.reconstruct_trigger(x, y, flagged, 2, pixels=0)
    with pytest.raises(ValueError, match="value"):
        audit.stamp(x, pixels, value=2.0)


def test_audit_explorer_precomputes_one_card_per_model(split, clean):
    reports = {name: audit.audit(clean, split, name=name, checks=FAKES) for name in ("a", "b")}
    box = audit_explorer(reports, live=False)
    stacks = [w for w in box.children if w.__class__.__name__ == "Stack"]
    assert len(stacks) == 1 and len(stacks[0].children) == 2
    with pytest.raises(ValueError, match="reports"):
        audit_explorer({})
    with pytest.raises(ValueError, match="report"):
        plot_report("not a report")
