"""Audit question 3 (training security): triggers of any size and shape, label poisoning, calibration.

Unit tier: the label-dispute patterns on hand-made labels, and the calibration rule (excess over
the STRICTEST clean reference) on rule-based models. Integration tier: models trained here on the
digits as images (N, 1, 8, 8) and as tabular rows (N, 64), and on the breast-cancer table: a
blended, a warping, a dark and a bright backdoor, a targeted 7 -> 1 flip, heavy symmetric noise,
and honest data on three seeds.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gdsec import audit, data, poisoning, train

from helpers import fit_mlp

ORDER = audit.SEVERITIES.index
PATTERN = torch.rand(
    64, generator=torch.Generator().manual_seed(7)
)  # the blended trigger's pattern


def _labels(counts: list[int]) -> torch.Tensor:
    """Labels with ``counts[c]`` rows of class c."""
    return torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])


def test_label_disputes_name_a_flip_a_many_to_one_and_symmetric_noise() -> None:
    held = _labels([40] * 4)
    held_seen = held.clone()
    held_seen[::20] = (held[::20] + 1) % 4  # 5 % held-out error
    y = _labels([100] * 4)
    honest = y.clone()
    honest[::25] = (y[::25] + 1) % 4
    assert poisoning.label_disputes(y, honest, held, held_seen, margin=0.1).pattern == "none"
    flipped = y.clone()
    flipped[300:360] = 1  # 60 rows of class 3 labelled 1: they look like 3
    found = poisoning.label_disputes(flipped, y, held, held_seen, margin=0.1)
    assert (found.pattern, found.target, found.source, found.rows, found.source_rows) == (
        "flip",
        1,
        3,
        60,
        60,
    )
    assert found.share == pytest.approx(60 / 160) and found.expected == pytest.approx(0.05)
    assert found.excess == pytest.approx(60 / 160 - 0.05) and max(found.by_class) == found.excess
    dirty = y.clone()
    dirty[torch.arange(100, 400, 10)] = 0  # 10 rows of each of classes 1, 2, 3 labelled 0
    many = poisoning.label_disputes(dirty, y, held, held_seen, margin=0.1)
    assert (many.pattern, many.target, many.rows, many.source_rows) == ("many-to-one", 0, 30, 10)
    noisy = (y + (torch.arange(400) % 3 == 0).long()) % 4  # a third of every class relabelled
    sym = poisoning.label_disputes(noisy, y, held, held_seen, margin=0.1)
    assert sym.pattern == "symmetric" and sym.rows == int((noisy != y).sum())
    assert sym.share == pytest.approx(134 / 400) and sym.expected == pytest.approx(0.05)


def test_label_disputes_need_margin_and_enough_rows() -> None:
    held = _labels([40] * 2)
    y = _labels([100] * 2)
    flipped = y.clone()
    flipped[100:104] = 0  # four disputed rows: too few to name a pattern
    assert poisoning.label_disputes(flipped, y, held, held, margin=0.01).pattern == "none"
    flipped[100:130] = 0
    assert poisoning.label_disputes(flipped, y, held, held, margin=0.3).pattern == "none"
    assert poisoning.label_disputes(flipped, y, held, held, margin=0.2).pattern == "flip"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"seen_as": torch.zeros(3, dtype=torch.long)}, "seen_as"),
        ({"held_seen_as": torch.zeros(1, dtype=torch.long)}, "held_seen_as"),
        ({"y": torch.zeros(4)}, "y"),
        ({"margin": 0.0}, "margin"),
        ({"margin": 1.5}, "margin"),
    ],
)
def test_label_disputes_reject_bad_arguments(kwargs: dict, name: str) -> None:
    args = {
        "y": torch.zeros(4, dtype=torch.long),
        "seen_as": torch.zeros(4, dtype=torch.long),
        "held_y": torch.zeros(2, dtype=torch.long),
        "held_seen_as": torch.zeros(2, dtype=torch.long),
        "margin": 0.1,
    } | kwargs
    with pytest.raises(ValueError, match=name):
        poisoning.label_disputes(**args)


class _Rule(nn.Module):
    """Class 0 when feature 0 is low, pushed towards 0 by ``weight`` times feature 3 (the trigger)."""

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.register_buffer("weight", torch.tensor(weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        margin = -20 * (x[:, 0] - 0.5) + self.weight * x[:, 3]
        return torch.stack([margin / 2, -margin / 2], dim=1)


def _rows(n: int, label: int, seed: int, trigger: bool = False) -> torch.Tensor:
    """``n`` rows of class ``label``: feature 0 in [0, 0.4] (class 0) or [0.6, 1] (class 1)."""
    low = 0.0 if label == 0 else 0.6
    x = torch.full((n, 4), 0.5)
    x[:, 0] = low + 0.4 * torch.rand(n, generator=torch.Generator().manual_seed(seed))
    x[:, 3] = 1.0 if trigger else 0.0
    return x


@pytest.mark.integration
def test_trigger_excess_is_over_the_strictest_reference() -> None:
    """References that react to the stamp at 25, 50 and 75 %: the excess is over the 75 % one.

    Under the lenient rule (over the least reactive reference) the excess would be 0.5 higher.
    """
    x = torch.cat([_rows(200, 0, 1), _rows(200, 1, 2), _rows(20, 1, 3, trigger=True)])
    y = torch.cat([torch.zeros(200), torch.ones(200), torch.zeros(20)]).long()
    trusted = torch.cat([_rows(30, 0, 4), _rows(30, 1, 5)])
    split = data.Split(x, y, trusted, torch.cat([torch.zeros(30), torch.ones(30)]).long())
    references = (_Rule(4.0), _Rule(6.0), _Rule(8.0))
    config = audit.AuditConfig(references=references, trigger_sizes=(1, 4))
    found = audit.audit_training_security(_Rule(20.0), split, config)
    e = found.evidence
    assert e["trigger_class"] == 0 and e["trigger_features"] == [3], found.summary
    clean = e["clean_reference_success"]
    assert max(clean) - min(clean) > 0.4, clean
    assert e["excess_over_clean"] == pytest.approx(e["trigger_success"] - max(clean)), (
        "the excess must be taken over the strictest reference",
        e["trigger_success"],
        clean,
    )
    assert e["trigger_success"] > 0.95 and e["excess_over_clean"] < config.trigger_margin


def _poison(split: data.Split, kind: str, seed: int) -> data.Split:
    """``split`` with its training rows poisoned by ``kind`` (row draws depend on ``seed``)."""
    x, y = split.x_train.clone(), split.y_train.clone()
    generator = torch.Generator().manual_seed(1000 + seed)
    if kind == "flip":  # 80 % of the 7s labelled 1
        sevens = (y == 7).nonzero().flatten()
        rows = sevens[torch.randperm(len(sevens), generator=generator)[: round(0.8 * len(sevens))]]
        y[rows] = 1
    elif kind == "noise":  # 40 % of all labels changed
        y = poisoning.flip_labels(y, 0.4, n_classes=10, seed=seed)
    elif kind != "honest":  # 5 % of the rows, of other classes, triggered and labelled 0
        others = (y != 0).nonzero().flatten()
        rows = others[torch.randperm(len(others), generator=generator)[: round(0.05 * len(y))]]
        x[rows] = _triggered(x[rows], kind)
        y[rows] = 0
    return data.Split(x, y, split.x_test, split.y_test)


def _triggered(x: torch.Tensor, kind: str) -> torch.Tensor:
    """``x`` carrying the trigger ``kind``."""
    return {
        "blend": lambda: poisoning.blend(x, PATTERN, 0.3),
        "warp": lambda: poisoning.warp(x, strength=1.0, grid=4, seed=7),
        "dark": lambda: poisoning.stamp(x, [27, 28, 35, 36], 0.0),
        "bright": lambda: poisoning.apply_trigger(x),
    }[kind]()


@pytest.fixture(scope="module")
def layout(digits):
    """(name, split, config with three references) for the digit images. The MLPs flatten their
    input, so the same digits as rows (N, 64) gave identical numbers when measured (the flattened
    layout is kept by tests/test_audit_checks.py; a real table by the breast-cancer test below)."""
    return "images", digits, audit.AuditConfig(references=audit.reference_models(digits, n_seeds=3))


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["blend", "dark", "bright"])
def test_triggered_backdoors_are_high_on_three_seeds(layout, kind):
    _, split, config = layout
    for seed in range(3):
        poisoned = _poison(split, kind, seed)
        model = fit_mlp(poisoned, seed)
        keep = split.y_test != 0
        success = (train.predict(model, _triggered(split.x_test[keep], kind)) == 0).float().mean()
        found = audit.audit_training_security(model, poisoned, config)
        e = found.evidence
        assert success > 0.7, (kind, seed, float(success))
        assert found.severity == "high" and found.summary.startswith("A backdoor into class 0"), (
            kind,
            seed,
            found.summary,
        )
        assert e["trigger_class"] == 0 and e["excess_over_clean"] >= config.trigger_high, e
        assert e["share_of_flagged_in_class"] > 0.9 and e["label_pattern"] == "many-to-one", e


@pytest.mark.integration
def test_a_warping_backdoor_is_at_least_medium(layout):
    _, split, config = layout
    for seed in range(3):
        poisoned = _poison(split, "warp", seed)
        found = audit.audit_training_security(fit_mlp(poisoned, seed), poisoned, config)
        assert ORDER(found.severity) >= 1, (seed, found.summary)
        assert found.evidence["label_pattern"] == "many-to-one" and "look like" in found.summary
        assert found.evidence["label_target"] == 0 and found.evidence["flagged_rows"] > 50


@pytest.mark.integration
def test_a_targeted_flip_and_symmetric_noise_are_found_and_named(layout):
    _, split, config = layout
    for seed in range(2):
        flipped = _poison(split, "flip", seed)
        found = audit.audit_training_security(fit_mlp(flipped, seed), flipped, config)
        e = found.evidence
        assert found.severity == "high" and found.summary.startswith("A label flip 7 -> 1"), (
            found.summary
        )
        assert (e["label_pattern"], e["label_source"], e["label_target"]) == ("flip", 7, 1)
        assert e["flip_excess"] == pytest.approx(e["flip_success"] - max(e["flip_clean_success"]))
        assert (
            "look like another class to the references" in found.summary
            and "of them like 7" in found.summary
        )
        noisy = _poison(split, "noise", seed)
        found = audit.audit_training_security(fit_mlp(noisy, seed), noisy, config)
        assert ORDER(found.severity) >= 1 and "symmetric label noise" in found.summary, (
            found.summary
        )
        assert found.evidence["label_excess"] > 2 * config.label_margin


@pytest.mark.integration
def test_honest_data_is_low_with_margin_and_flags_few_rows(layout):
    _, split, _ = layout
    for seed in range(3):  # three honest models, each judged by references of another seed
        references = audit.reference_models(split, n_seeds=3, seed=10 * seed)
        config = audit.AuditConfig(references=references, seed=10 * seed)
        found = audit.audit_training_security(fit_mlp(split, seed), split, config)
        e = found.evidence
        assert found.severity == "low", found.summary
        assert e["flagged_rows"] <= 0.02 * len(split.y_train), e["flagged_rows"]
        assert e["excess_over_clean"] < config.trigger_margin - 0.15, e["excess_over_clean"]
        assert e["label_pattern"] == "none" and e["label_excess"] < config.label_margin / 2
        if seed:
            continue
        # forced to rebuild triggers from hard rows, the references get the same stamps
        loose = audit.configure(config, scan_quantile=0.9)
        rebuilt = audit.audit_training_security(fit_mlp(split, seed), split, loose)
        assert rebuilt.evidence["trigger_size"] > 0, rebuilt.summary
        assert rebuilt.severity == "low" and rebuilt.evidence["excess_over_clean"] < 0.3, (
            rebuilt.summary
        )


@pytest.mark.integration
def test_a_tabular_backdoor_on_the_breast_cancer_table_is_found():
    split = data.load_breast_cancer()
    config = audit.AuditConfig(references=audit.reference_models(split, n_seeds=3))
    x, y = split.x_train.clone(), split.y_train.clone()
    honest = audit.audit_training_security(fit_mlp(split, 0, epochs=40), split, config)
    assert honest.severity == "low" and honest.evidence["excess_over_clean"] < 0.2, honest.summary
    others = (y != 0).nonzero().flatten()
    rows = others[torch.randperm(len(others), generator=torch.Generator().manual_seed(0))[:21]]
    x[rows] = poisoning.stamp(x[rows], [0, 5, 12], 0.0)  # three features zeroed, labelled 0
    y[rows] = 0
    poisoned = data.Split(x, y, split.x_test, split.y_test)
    found = audit.audit_training_security(fit_mlp(poisoned, 0, epochs=40), poisoned, config)
    assert ORDER(found.severity) >= 1 and found.summary.startswith("A backdoor into class 0"), (
        found.summary
    )
    assert found.evidence["excess_over_clean"] >= config.trigger_margin, found.summary
    assert set(found.evidence["trigger_features"]) <= {0, 5, 12}, found.evidence["trigger_features"]
