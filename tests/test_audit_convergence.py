"""Question 5 compares sharpness only between models of the same parameter shapes: an honest CNN is
not a sharper MLP (the zoo's honest CNNs were 11-27 times the MLP references' sharpness), while a
same-shaped MLP made sharper by a Dinh et al. reparametrisation (the same function) is still
compared, and flagged."""

from __future__ import annotations

import copy

import pytest
import torch

from gdsec import audit

pytestmark = pytest.mark.integration


def _finding(model, split, references):
    config = audit.AuditConfig(references=references, sharpness_rows=100, sharpness_ratio=3.0)
    return audit.audit_convergence_properties(model, split, config)


def _concerns(finding) -> str:
    return finding.summary.split("Concerns:")[1] if "Concerns:" in finding.summary else ""


def test_sharpness_is_compared_only_with_references_of_the_same_shapes(digits, digits_cnn):
    references = audit.reference_models(digits, n_seeds=1, seed=3)
    sharp = copy.deepcopy(references[0])  # the same function, 10 times the curvature in layer 3
    with torch.no_grad():
        sharp[1].weight.mul_(10.0)
        sharp[1].bias.mul_(10.0)
        sharp[3].weight.div_(10.0)
    x = digits.x_test[:50]
    assert torch.allclose(sharp(x), references[0](x), atol=1e-4), (
        "a reparametrisation, not a new model"
    )
    mlp, cnn = _finding(sharp, digits, references), _finding(digits_cnn, digits, references)
    assert mlp.evidence["sharpness_comparable"] and mlp.evidence["sharpness_ratio"] > 3.0
    assert "sharpness" in _concerns(mlp), mlp.summary
    assert not cnn.evidence["sharpness_comparable"] and cnn.evidence["sharpness_ratio"] > 3.0
    assert "sharpness" not in _concerns(cnn) and "not compared" in cnn.summary, cnn.summary
