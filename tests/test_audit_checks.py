"""Unit tests for the five audit checks (gdsec.audit's question modules) on real models, and for the
backdoor tools the training-security check uses (gdsec.poisoning.reconstruct_trigger and stamp)."""

from __future__ import annotations

import json

import pytest
import torch

from gdsec import audit, data, masking, models, poisoning, train

FAST = dict(eps_grid=(0.1,), n_eval=60, pgd_steps=5, queries=60, seed=0)


@pytest.fixture(scope="module")
def poisoned(digits) -> tuple[torch.nn.Module, data.Split, torch.Tensor]:
    x_p, y_p, index = poisoning.add_backdoor(digits.x_train, digits.y_train, target=3, fraction=0.05, seed=0)
    model = models.mlp(seed=0)
    train.train(model, x_p, y_p, optimizer="adam", lr=0.01, epochs=20, batch_size=64, progress=False)
    return model, data.Split(x_p, y_p, digits.x_test, digits.y_test), index


@pytest.fixture(scope="module")
def reference(digits) -> torch.nn.Module:
    return audit.reference_model(digits, seed=0)


@pytest.fixture(scope="module")
def masked(digits_mlp) -> torch.nn.Module:
    return masking.defend(digits_mlp, "temperature", temperature=1000.0)


def test_real_audit_tells_clean_backdoored_and_masked_apart(digits, digits_mlp, poisoned, reference, masked):
    backdoored, poisoned_split, _ = poisoned
    reports = {
        "clean": audit.audit(digits_mlp, digits, reference=reference, **FAST),
        "backdoored": audit.audit(backdoored, poisoned_split, reference=reference, **FAST),
        "masked": audit.audit(masked, digits, reference=reference, **FAST),
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


def test_gradient_exposure_levels(digits, digits_mlp):
    severities = {}
    for exposure in audit.EXPOSURES:
        config = audit.AuditConfig(exposure=exposure, n_eval=60, pgd_steps=5, queries=60)
        finding = audit.check_gradient_exposure(digits_mlp, digits, config)
        severities[exposure] = finding.severity
        assert ("dlg_reconstruction_mse" in finding.evidence) == (exposure == "gradients")
    assert severities["gradients"] == "high"
    order = audit.SEVERITIES.index
    assert order(severities["labels"]) <= order(severities["scores"]) <= order(severities["gradients"])


def test_adversarial_testing_takes_the_worst_case(digits, masked):
    config = audit.AuditConfig(eps_grid=(0.1, 0.3), n_eval=60, pgd_steps=5, queries=100)
    finding = audit.check_adversarial_testing(masked, digits, config)
    assert set(finding.evidence["robust_accuracy_by_eps"]) == {"0.1", "0.3"}
    assert finding.evidence["strongest_attack_by_eps"]["0.3"] == "square"
    assert finding.evidence["robust_accuracy_by_eps"]["0.3"] < 0.2


def test_convergence_properties_of_a_trained_model(digits, digits_mlp):
    finding = audit.check_convergence_properties(digits_mlp, digits, audit.AuditConfig(sharpness_rows=200))
    assert finding.severity == "low"
    assert finding.evidence["final_loss"] < 0.2 and finding.evidence["sharpness"] > 0
    assert all(p.grad is None for p in digits_mlp.parameters())


def test_reconstruct_trigger_and_stamp():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(40, 1, 4, 4, generator=generator) * 0.5
    y = torch.arange(40) % 4
    x[y == 2, 0, 0, 0] = 1.0
    x[y == 2, 0, 3, 3] = 1.0
    flagged = torch.nonzero(y == 2).flatten()[:5]
    pixels = poisoning.reconstruct_trigger(x, y, flagged, 2, pixels=2)
    assert pixels.tolist() == [0, 15]
    stamped = poisoning.stamp(x[:3], pixels)
    assert stamped[:, 0, 0, 0].eq(1).all() and stamped[:, 0, 3, 3].eq(1).all() and not torch.equal(stamped, x[:3])
    with pytest.raises(ValueError, match="flagged"):
        poisoning.reconstruct_trigger(x, y, flagged, 1)
    with pytest.raises(ValueError, match="pixels"):
        poisoning.reconstruct_trigger(x, y, flagged, 2, pixels=0)
    with pytest.raises(ValueError, match="value"):
        poisoning.stamp(x, pixels, value=2.0)
