"""Unit tests for gdsec.audit.config: AuditConfig validates every field; configure rejects unknown names."""

from __future__ import annotations

import pytest

from gdsec import audit, models
from gdsec.attacks import Budget
from gdsec.audit.config import configure, eval_rows, provenance


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"exposure": "weights"}, "exposure"),
        ({"eps": 0.0}, "eps"),
        ({"eps": float("nan")}, "eps"),
        ({"eps_grid": ()}, "eps_grid"),
        ({"eps_grid": "0.1"}, "eps_grid"),
        ({"eps_grid": (0.1, 1.5)}, "eps_grid"),
        ({"n_eval": 0}, "n_eval"),
        ({"n_eval": 2.5}, "n_eval"),
        ({"budget": {"steps": 1}}, "budget"),
        ({"budget": Budget(check_rows=0)}, "check_rows"),
        ({"expected_fraction": 1.5}, "expected_fraction"),
        ({"poison_method": "magic"}, "poison_method"),
        ({"reference": "model"}, "reference"),
        ({"surrogate": 3}, "surrogate"),
        ({"trigger_sizes": (4, 0)}, "trigger_sizes"),
        ({"trigger_sizes": ()}, "trigger_sizes"),
        ({"trigger_sizes": 9}, "trigger_sizes"),
        ({"scan_quantile": 0.2}, "scan_quantile"),
        ({"scan_quantile": 1.5}, "scan_quantile"),
        ({"label_margin": 0.0}, "label_margin"),
        ({"sharpness_rows": 0}, "sharpness_rows"),
        ({"sharpness_ratio": 0.5}, "sharpness_ratio"),
        ({"trigger_margin": 0.0}, "trigger_margin"),
        ({"trigger_high": 0.2}, "trigger_high"),
        ({"adaptive_tol": 2.0}, "adaptive_tol"),
        ({"n_references": 0}, "n_references"),
        ({"references": ()}, "references"),
        ({"references": models.mlp(seed=0)}, "references"),
        ({"references": ("model",)}, "references"),
        ({"generalisation_gap": 1.5}, "generalisation_gap"),
        ({"seed": -1}, "seed"),
        ({"seed": True}, "seed"),
    ],
)
def test_config_rejects_a_bad_value_naming_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        audit.AuditConfig(**kwargs)
    with pytest.raises(ValueError, match=match):
        configure(audit.AuditConfig(), **kwargs)


def test_configure_names_every_unknown_setting():
    with pytest.raises(ValueError, match="colour, speed"):
        configure(colour=1.0, speed=2, eps=0.2)
    with pytest.raises(ValueError, match="config"):
        configure({"eps": 0.1})
    assert set(audit.THRESHOLDS) <= {f for f in audit.AuditConfig.__dataclass_fields__}


def test_configure_replaces_fields_and_leaves_the_original():
    base = audit.AuditConfig(eps=0.2)
    assert configure(base) is base and configure() == audit.AuditConfig()
    changed = configure(base, n_eval=10, sharpness_ratio=5.0)
    assert (changed.eps, changed.n_eval, changed.sharpness_ratio) == (0.2, 10, 5.0)
    assert (base.n_eval, base.sharpness_ratio) == (None, 10.0)


def test_config_normalises_the_grid_and_names_models_in_public():
    config = audit.AuditConfig(eps=1, eps_grid=[0.1, 1], reference=models.mlp(seed=0))
    assert config.eps_grid == (0.1, 1.0) and isinstance(config.eps, float)
    public = config.public()
    assert public["reference"] == "given" and public["surrogate"].startswith("the first reference")
    assert (
        public["eps_grid"] == (0.1, 1.0)
        and public["n_eval"] == "all"
        and public["references"] == "3 trained on the trusted split"
    )
    assert set(public) == {*audit.AuditConfig.__dataclass_fields__, "gdsec_version"}
    assert audit.AuditConfig(references=[models.mlp(seed=0)]).public()["references"] == "1 given"


def test_eval_rows_takes_the_first_rows_of_the_held_out_split(digits):
    x, y = eval_rows(digits, audit.AuditConfig(n_eval=7))
    assert x.shape[0] == 7 and (x == digits.x_test[:7]).all() and (y == digits.y_test[:7]).all()
    x, _ = eval_rows(digits, audit.AuditConfig(n_eval=10_000))
    assert x.shape[0] == digits.x_test.shape[0]
    x, _ = eval_rows(digits, audit.AuditConfig())
    assert x.shape[0] == digits.x_test.shape[0], "the default measures on the whole trusted split"


def test_provenance_names_sample_size_budgets_and_version():
    import gdsec

    record = provenance(
        7, audit.AuditConfig(budget=Budget(steps=3)), ("steps", "square_steps", "sharpness_rows")
    )
    assert record == {
        "n": 7,
        "budgets": {"steps": 3, "square_steps": 5000, "sharpness_rows": 500},
        "gdsec_version": gdsec.__version__,
    }
    assert provenance(7, audit.AuditConfig())["budgets"] == Budget().stated()
    assert audit.AuditConfig().public()["budget"] == Budget().stated()
