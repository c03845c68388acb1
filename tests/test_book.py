"""The book builds from a clean copy with zero warnings; a failing notebook fails the build."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from helpers import ROOT, build_book

SPHINX_WARNING = re.compile(r"(WARNING|ERROR|CRITICAL): ")


@pytest.mark.slow
@pytest.mark.xdist_group("book")
def test_book_builds_with_zero_warnings(built_book):
    output = built_book["output"]
    assert built_book["returncode"] == 0, f"jupyter-book build failed:\n{output[-8000:]}"
    warnings = [line for line in output.splitlines() if SPHINX_WARNING.search(line)]
    assert not warnings, "the build printed warnings:\n" + "\n".join(warnings[:30])
    assert "build succeeded" in output
    reports = built_book["html"] / "reports"
    assert not reports.exists() or not any(reports.iterdir()), "execution reports mean a notebook failed"


@pytest.mark.slow
@pytest.mark.xdist_group("book")
def test_every_chapter_page_was_executed(built_book):
    html = built_book["html"]
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        page = html / "notebooks" / f"{notebook.stem}.html"
        assert page.exists(), f"{page} was not built"
        text = page.read_text()
        assert "cell_output" in text, f"{notebook.name} has no outputs on its page"
        assert "FloatProgress" not in text and "HBox(children" not in text, f"progress bar text leaked into {page.name}"
        assert "Traceback" not in text, f"{page.name} shows a traceback"


def _broken_book(root):
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "_config.yml", root / "_config.yml")
    shutil.copytree(ROOT / "book", root / "book")
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: book/setup\nchapters:\n  - file: notebooks/01_broken\n"
    )
    notebook = {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# Broken on purpose"]},
            {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
             "source": ["raise RuntimeError('this notebook is broken on purpose')"]},
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (root / "notebooks" / "01_broken.ipynb").write_text(json.dumps(notebook))
    return root


@pytest.mark.slow
def test_a_failing_notebook_fails_the_build(tmp_path):
    root = _broken_book(tmp_path / "broken")
    done = build_book(root, timeout=600)
    assert done.returncode != 0, "a notebook that raises must fail the book build"
    assert "broken on purpose" in done.stdout + done.stderr
