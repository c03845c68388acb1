"""Shared helpers for the slow tests: copy the course to a scratch folder and build the book there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IGNORED = shutil.ignore_patterns(
    "_build", ".git", ".jupyter_cache", "jupyter_execute", "node_modules", "__pycache__",
    ".pytest_cache", ".ruff_cache", ".hypothesis", ".ipynb_checkpoints", "test-artifacts", "*.egg-info", "_vendor",
)


def copy_course(dest: Path) -> Path:
    """Copy the working tree (without build outputs and caches) to ``dest``; return ``dest``."""
    shutil.copytree(ROOT, dest, ignore=IGNORED, dirs_exist_ok=True)
    return dest


def _build_env() -> dict[str, str]:
    """The environment for a book build: the test session's, minus settings meant for the tests only.

    ``MPLBACKEND`` goes: conftest sets it to ``Agg`` for the tests, and a kernel that inherits it
    never switches to the inline backend, so ``plt.show()`` would leave every figure out of the book.
    """
    env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    for name in ("GDSEC_WIDGETS", "MPLBACKEND"):
        env.pop(name, None)
    return env


def build_book(root: Path, *, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    """Run ``jupyter-book build . -W -n --keep-going`` in ``root``; return the finished process."""
    env = _build_env()
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book) if jupyter_book.exists() else "jupyter-book", "build", ".", "-W", "-n", "--keep-going"]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)


def build_pdf(root: Path, *, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    """Run ``jupyter-book build . --builder pdflatex -W -n --keep-going`` in ``root`` (after the HTML build).

    The notebooks come from the HTML build's execution cache (``_build/.jupyter_cache``): they are not
    run again. The PDF lands in ``_build/latex/gradient-descent-security.pdf``.
    """
    env = _build_env()
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book) if jupyter_book.exists() else "jupyter-book", "build", ".", "--builder", "pdflatex",
               "-W", "-n", "--keep-going"]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)


def in_ci() -> bool:
    """True when running under CI, where missing tools must fail instead of skip."""
    return bool(os.environ.get("CI"))
