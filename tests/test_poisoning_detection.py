"""Tests for gdsec.poisoning.detection: spectral signatures and loss filtering find poisoned rows."""

from __future__ import annotations

import pytest
import torch

from gdsec import data, models, poisoning, train


@pytest.fixture(scope="module")
def backdoored(digits: data.Split) -> tuple:
    x_p, y_p, index = poisoning.add_backdoor(
        digits.x_train, digits.y_train, target=0, fraction=0.05
    )
    model = models.mlp(hidden=32, seed=0)
    train.train(model, x_p, y_p, lr=0.1, epochs=25, batch_size=32, progress=False)
    return model, x_p, y_p, index


@pytest.mark.integration
def test_detect_poison_spectral_finds_backdoor_rows(backdoored: tuple) -> None:
    model, x_p, y_p, index = backdoored
    x0, y0 = x_p.clone(), y_p.clone()
    params = [p.detach().clone() for p in model.parameters()]
    model.train()
    found = poisoning.detect_poison(model, x_p, y_p, method="spectral", expected_fraction=1 / 3)
    assert model.training
    assert torch.equal(x_p, x0) and torch.equal(y_p, y0)
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters(), strict=True))
    model.eval()
    assert found.scores.shape == (len(x_p),)
    assert found.flagged.dtype == torch.int64
    flagged_0, hits_0, poisoned_0 = poisoning.quality_by_label(found.flagged, index, y_p)[0]
    assert poisoned_0 == len(index)
    # within the target label, Tran's ranking finds most of the poison well above its 1/3 base rate
    assert hits_0 / flagged_0 > 0.45 and hits_0 / poisoned_0 > 0.6
    assert found.scores[index].mean() > 2 * found.scores.mean()


def test_detect_poison_spectral_ranks_each_label_on_its_own(backdoored: tuple) -> None:
    model, x_p, y_p, index = backdoored
    found = poisoning.detect_poison(
        model, x_p, y_p, method="spectral", expected_fraction=0.05, removal=1.5
    )
    for label in y_p.unique():
        rows = torch.nonzero(y_p == label).flatten()
        k = round(1.5 * 0.05 * len(rows))
        mine = found.flagged[y_p[found.flagged] == label]
        assert len(mine) == k
        assert torch.equal(
            mine.sort().values, rows[torch.topk(found.scores[rows], k).indices].sort().values
        )
    # one ranking across labels (the old detector) spends most flags outside the target label
    ranked = torch.topk(found.scores, len(found.flagged)).indices
    assert (y_p[ranked] == 0).sum() < 0.5 * len(ranked)
    per_label = poisoning.detect_poison(model, x_p, y_p, method="spectral", expected_fraction=1 / 3)
    hits_per_label = poisoning.quality_by_label(per_label.flagged, index, y_p)[0][1]
    top_0 = torch.topk(per_label.scores, round(1.5 * len(index))).indices
    assert hits_per_label > 1.3 * int(torch.isin(top_0, index).sum())


def test_quality_by_label_counts() -> None:
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    table = poisoning.quality_by_label(torch.tensor([0, 1, 3, 5]), torch.tensor([1, 2, 4]), y)
    assert table == {0: (2, 1, 2), 1: (1, 0, 1), 2: (1, 0, 0)}
    with pytest.raises(ValueError, match="y"):
        poisoning.quality_by_label(torch.tensor([0]), torch.tensor([0]), torch.tensor([0.5]))


def test_detect_poison_loss_with_trusted_reference_finds_backdoor(backdoored: tuple) -> None:
    _, x_p, y_p, index = backdoored
    trusted = torch.randperm(len(x_p), generator=torch.Generator().manual_seed(1))[:150]
    trusted = trusted[~torch.isin(trusted, index)]
    reference = models.logistic_regression(seed=0)
    train.train(reference, x_p[trusted], y_p[trusted], lr=0.5, epochs=100, progress=False)
    found = poisoning.detect_poison(reference, x_p, y_p, method="loss", expected_fraction=0.05)
    precision, recall = poisoning.detection_quality(found.flagged, index)
    assert recall > 0.85 and precision > 0.5


def test_detect_poison_loss_method_finds_flipped_labels(digits: data.Split) -> None:
    model = models.logistic_regression(seed=0)
    train.train(
        model, digits.x_train, digits.y_train, lr=0.5, epochs=20, batch_size=64, progress=False
    )
    y_bad = poisoning.flip_labels(digits.y_train, 0.05, n_classes=10, seed=0)
    truth = torch.nonzero(y_bad != digits.y_train).flatten()
    found = poisoning.detect_poison(
        model, digits.x_train, y_bad, method="loss", expected_fraction=0.05, removal=1.0
    )
    precision, recall = poisoning.detection_quality(found.flagged, truth)
    assert precision > 0.8 and recall > 0.8


def test_detect_poison_rejects_bad_arguments(backdoored: tuple) -> None:
    model, x_p, y_p, _ = backdoored
    with pytest.raises(ValueError, match="method"):
        poisoning.detect_poison(model, x_p, y_p, method="magic")
    with pytest.raises(ValueError, match="expected_fraction"):
        poisoning.detect_poison(model, x_p, y_p, expected_fraction=0.0)
    with pytest.raises(ValueError, match="y"):
        poisoning.detect_poison(model, x_p, y_p[:-1])
    with pytest.raises(ValueError, match="model"):
        poisoning.detect_poison("model", x_p, y_p)
    with pytest.raises(ValueError, match="x"):
        poisoning.detect_poison(model, x_p[:1], y_p[:1])
    with pytest.raises(ValueError, match="x"):
        poisoning.detect_poison(model, x_p.long(), y_p)


def test_detection_quality_counts() -> None:
    assert poisoning.detection_quality(torch.tensor([1, 2, 3, 4]), torch.tensor([2, 4, 6])) == (
        0.5,
        2 / 3,
    )
    assert poisoning.detection_quality(torch.tensor([], dtype=torch.long), torch.tensor([1])) == (
        0.0,
        0.0,
    )


def test_penultimate_features_shape(digits: data.Split) -> None:
    features = poisoning.penultimate_features(models.mlp(hidden=16, seed=0), digits.x_test[:7])
    assert features.shape == (7, 16)
    with pytest.raises(ValueError, match="nn.Linear"):
        poisoning.penultimate_features(torch.nn.Flatten(), digits.x_test[:2])
    with pytest.raises(ValueError, match="x"):
        poisoning.penultimate_features(models.mlp(hidden=16, seed=0), torch.zeros(64))
