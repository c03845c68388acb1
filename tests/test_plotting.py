"""Tests for gdsec.plotting's Markdown tables."""

from __future__ import annotations

import pytest

from gdsec.plotting import markdown_table


def test_markdown_table_has_header_rule_and_rows() -> None:
    text = markdown_table(["rule", "accuracy"], [["mean", "0.91"], ["Krum", 0.5]])
    assert text.splitlines() == [
        "| rule | accuracy |",
        "|---|---|",
        "| mean | 0.91 |",
        "| Krum | 0.5 |",
    ]


def test_markdown_table_keeps_each_cell_on_its_line() -> None:
    text = markdown_table(["a|b"], [["two\nlines"]])
    assert text.splitlines() == ["| a\\|b |", "|---|", "| two lines |"]


@pytest.mark.parametrize(
    ("header", "rows", "match"),
    [
        ([], [], "header"),
        ("ab", [], "header"),
        (["a", "b"], [["1"]], r"rows\[0\]"),
        (["a"], "x", "rows"),
        (["a"], [["1"], "2"], r"rows\[1\]"),
    ],
)
def test_markdown_table_rejects_ragged_or_bad_input(
    header: object, rows: object, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        markdown_table(header, rows)
