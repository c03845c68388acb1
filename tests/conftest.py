"""Fixtures shared by the test suite. The book is built once per test session (per xdist group)."""

from __future__ import annotations

import os

import pytest

from helpers import build_book, copy_course

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def built_book(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Build the book from a clean copy of the course with warnings as errors (executes every notebook)."""
    root = copy_course(tmp_path_factory.mktemp("book") / "course")
    process = build_book(root)
    return {
        "root": root,
        "html": root / "_build" / "html",
        "returncode": process.returncode,
        "output": process.stdout + process.stderr,
    }

