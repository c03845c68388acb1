"""gdsec.book: the notebooks' glue helpers glue plain numbers under the keys the prose cites."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
import torch

from gdsec import book
from gdsec.seeds import summarise


@pytest.fixture
def glued(monkeypatch):
    """What the helpers glue, key -> value, with ``display=False`` checked on every call."""
    seen = {}

    def fake_glue(key, value, display=True):
        assert display is False, f"{key} glued with display={display}"
        seen[key] = value

    monkeypatch.setattr(book, "glue", fake_glue)
    return seen


def test_glue_summary_glues_mean_and_sample_spread(glued):
    values = [0.9, 0.8, 0.95]
    summary = book.glue_summary("ch05_clean_acc", values)
    assert glued == {
        "ch05_clean_acc": pytest.approx(statistics.fmean(values)),
        "ch05_clean_acc_sd": pytest.approx(statistics.stdev(values)),
    }
    assert summary == summarise(values)


def test_glue_summary_stats_and_spread_suffix(glued):
    values = torch.tensor([3.0, 1.0, 2.0, 6.0])
    book.glue_summary("ch01_x", values, spread="_std", stats=("mean", "sd", "min", "max", "n"))
    assert glued == {
        "ch01_x": 3.0,
        "ch01_x_std": pytest.approx(float(values.std())),
        "ch01_x_min": 1.0,
        "ch01_x_max": 6.0,
        "ch01_x_n": 4,
    }
    assert all(type(v) in (int, float) for v in glued.values())
    assert type(glued["ch01_x_n"]) is int


def test_glue_summary_takes_a_summary_and_chosen_stats(glued):
    summary = summarise([1.0, 2.0])
    assert book.glue_summary("ch03_s", summary, stats=("max",)) is summary
    assert glued == {"ch03_s_max": 2.0}


def test_glue_many_glues_plain_numbers(glued):
    book.glue_many(
        {
            "ch01_a": np.float32(0.5),
            "ch01_b": torch.tensor(7),
            "ch01_c": np.int64(3),
            "ch01_d": 2,
            "ch01_e": torch.tensor([0.25], dtype=torch.float64),
        }
    )
    assert glued == {"ch01_a": 0.5, "ch01_b": 7, "ch01_c": 3, "ch01_d": 2, "ch01_e": 0.25}
    assert [type(v) for v in glued.values()] == [float, int, int, int, float]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: book.glue_many({}), "values must be a non-empty mapping"),
        (lambda: book.glue_many([("ch01_a", 1)]), "values must be a non-empty mapping"),
        (lambda: book.glue_many({"ch01 a": 1}), "values key must be a glue key"),
        (lambda: book.glue_many({"ch01_a": "0.5"}), r"values\['ch01_a'\] must be a number"),
        (lambda: book.glue_many({"ch01_a": True}), r"values\['ch01_a'\] must be a number"),
        (lambda: book.glue_many({"ch01_a": float("nan")}), r"values\['ch01_a'\] must be a finite"),
        (
            lambda: book.glue_many({"ch01_a": torch.ones(2)}),
            r"values\['ch01_a'\] must be one number",
        ),
        (lambda: book.glue_summary("", [1.0, 2.0]), "key must be a glue key"),
        (lambda: book.glue_summary("ch01_k", [1.0]), "values must hold at least 2"),
        (lambda: book.glue_summary("ch01_k", [1.0, 2.0], spread="_var"), "spread must be one of"),
        (lambda: book.glue_summary("ch01_k", [1.0, 2.0], stats="mean"), "stats must be a sequence"),
        (
            lambda: book.glue_summary("ch01_k", [1.0, 2.0], stats=("median",)),
            "stats must be one of",
        ),
        (lambda: book.glue_summary("ch01_k", [1.0, 2.0], stats=()), "stats must name at least one"),
    ],
)
def test_bad_input_names_the_argument_and_glues_nothing(glued, call, message):
    with pytest.raises(ValueError, match=message):
        call()
    assert glued == {}


@pytest.mark.integration
def test_importing_gdsec_does_not_import_the_book_module():
    import subprocess
    import sys

    code = "import sys, gdsec, gdsec.train; print('gdsec.book' in sys.modules, 'myst_nb' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"], out.stdout
