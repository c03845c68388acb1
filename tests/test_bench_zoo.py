"""bench/audit_zoo.py: the zoo's builders, truth rules and scorecard, on a tiny tabular zoo."""

import sys
from pathlib import Path

import pytest
import torch

from gdsec import data
from gdsec.attacks import BUDGETS
from gdsec.audit import AuditConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import audit_zoo  # noqa: E402
import zoo_models  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tabular():
    return data.load_breast_cancer()


def test_builders_know_their_truth(tabular):
    base = zoo_models.train_base(tabular, 100)
    flipped = zoo_models.build("flip_targeted", "tabular", tabular, 100, base)
    assert flipped.truth["training_security"] is True
    assert not torch.equal(flipped.split.y_train, tabular.y_train)  # the auditor gets the flips
    assert torch.equal(flipped.split.x_test, tabular.x_test)
    backdoor = zoo_models.build("extreme", "tabular", tabular, 100, base)
    assert backdoor.truth["training_security"] is True and backdoor.notes["attack_success"] > 0.5
    masked = zoo_models.build("quantized", "tabular", tabular, 100, base)
    assert masked.truth == {
        "training_security": False,
        "robustness_verification": True,
        "convergence_properties": None,
    }
    assert masked.attacked is not masked.model and masked.split is tabular
    rescaled = zoo_models.build("rescaled", "tabular", tabular, 100, base)
    assert rescaled.attacked is base and rescaled.truth["robustness_verification"] is False
    assert zoo_models.build("undertrained", "tabular", tabular, 100, base).truth[
        "convergence_properties"
    ]
    with pytest.raises(ValueError, match="kind"):
        zoo_models.build("nonsense", "tabular", tabular, 100, base)


@pytest.mark.parametrize(
    "question, severity, truth, inflated, expected",
    [
        ("training_security", "medium", True, False, "hit"),
        ("training_security", "low", True, False, "miss"),
        ("training_security", "medium", False, False, "alarm"),
        ("training_security", "high", None, False, "-"),
        ("adversarial_testing", "medium", True, False, "miss"),
        ("adversarial_testing", "high", True, True, "miss"),  # inflated: a miss regardless
        ("adversarial_testing", "high", True, False, "hit"),
        ("adversarial_testing", "medium", False, True, "alarm"),
        ("adversarial_testing", "low", False, True, "ok"),
    ],
)
def test_outcome_rules(question, severity, truth, inflated, expected):
    assert audit_zoo.outcome(question, severity, truth, inflated) == expected


def test_truth_thresholds_of_questions_1_and_2():
    member = zoo_models.ZooModel("k", "d", 100, None, None, {"training_security": None}, None, {})
    judged = zoo_models.judge(member, {"clean": 1.0, "robust": 0.6, "query_ratio": 0.4})
    assert judged["gradient_exposure"] is True and judged["adversarial_testing"] is None
    judged = zoo_models.judge(member, {"clean": 1.0, "robust": 0.8, "query_ratio": 0.9})
    assert judged["gradient_exposure"] is False and judged["adversarial_testing"] is False
    # Square is stuck (a random, quantised API) while the decisions break: question 1 asks what an
    # outsider with the scores reaches, so flagging it high is a false alarm
    judged = zoo_models.judge(member, {"clean": 0.9, "robust": 0.37, "query_ratio": 0.95})
    assert judged["gradient_exposure"] is False and judged["adversarial_testing"] is True


def test_tiny_zoo_runs_and_scores(tabular):
    config = AuditConfig(budget=BUDGETS["quick"], n_eval=40, eps_grid=(0.1,), n_references=1)
    rows = audit_zoo.run(["tabular"], ["honest_mlp", "rescaled"], 1, config, log=lambda m: None)
    assert [(r["kind"], r["seed"]) for r in rows] == [("honest_mlp", 100), ("rescaled", 100)]
    assert rows[1]["agrees_with_original"] == (rows[0]["severities"] == rows[1]["severities"])
    assert rows[0]["true_robust"] == rows[1]["true_robust"]  # the copy is judged on its original
    table, card = audit_zoo.scorecard(rows)
    by_question = {t["question"]: t for t in table}
    assert by_question["training_security"]["n_false"] == 2
    assert by_question["training_security"]["n_true"] == 0
    assert "not judged" in card and "| rescaled copy" in card
    assert "| tabular | rescaled | 100 |" in audit_zoo.per_model(rows)


def test_scorecard_counts_and_bar():
    def row(outcome):
        return {"outcome": dict.fromkeys(audit_zoo.RULES, outcome), "agrees_with_original": None}

    rows = [row("hit")] * 9 + [row("miss")] + [row("alarm")] + [row("ok")] * 9
    table, card = audit_zoo.scorecard(rows)
    first = table[0]
    assert (first["hits"], first["n_true"], first["alarms"], first["n_false"]) == (9, 10, 1, 10)
    assert first["meets_bar"]  # 90 % hits and 10 % false alarms are on the bar
    table, card = audit_zoo.scorecard(rows + [row("alarm")])
    assert not table[0]["meets_bar"] and "BELOW BAR" in card
