"""Shared test helpers: a small tabular data set, a small fitted MLP, and for the slow tests a scratch copy of the
course and its book."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from gdsec.data import Split

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
GDSEC_SOURCES = sorted((ROOT / "gdsec").rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


#: gdsec module name -> its source file (a package's ``__init__.py`` under the package's name).
GDSEC_MODULES = {_module_name(path): path for path in GDSEC_SOURCES}
IGNORED = shutil.ignore_patterns(
    "_build",
    ".git",
    ".jupyter_cache",
    "jupyter_execute",
    "node_modules",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    ".ipynb_checkpoints",
    "test-artifacts",
    "*.egg-info",
    "_vendor",
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
    command = [
        str(jupyter_book) if jupyter_book.exists() else "jupyter-book",
        "build",
        ".",
        "-W",
        "-n",
        "--keep-going",
    ]
    return subprocess.run(
        command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout
    )


def build_pdf(root: Path, *, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    """Run ``jupyter-book build . --builder pdflatex -W -n --keep-going`` in ``root`` (after the HTML build).

    The notebooks come from the HTML build's execution cache (``_build/.jupyter_cache``): they are not
    run again. The PDF lands in ``_build/latex/gradient-descent-security.pdf``.
    """
    env = _build_env()
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [
        str(jupyter_book) if jupyter_book.exists() else "jupyter-book",
        "build",
        ".",
        "--builder",
        "pdflatex",
        "-W",
        "-n",
        "--keep-going",
    ]
    return subprocess.run(
        command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout
    )


def in_ci() -> bool:
    """True when running under CI, where missing tools must fail instead of skip."""
    return bool(os.environ.get("CI"))


def make_blobs_2d(n: int = 200, *, n_classes: int = 2, spread: float = 0.6, seed: int = 0):
    """Gaussian blobs in the unit square as a ``gdsec.data.Split``: features (N, 2) float32 in [0, 1].

    The tests' tabular (N, d) inputs, which chapter 5's attacks accept; no chapter uses them.
    """
    import numpy as np
    import torch
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    from gdsec.data import Split

    features, labels = datasets.make_blobs(
        n_samples=n, centers=n_classes, cluster_std=spread, random_state=seed, n_features=2
    )
    features = ((features - features.min(axis=0)) / np.ptp(features, axis=0)).astype(np.float32)
    parts = train_test_split(
        features, labels.astype(np.int64), test_size=0.25, random_state=seed, stratify=labels
    )
    x_train, x_test, y_train, y_test = (torch.from_numpy(np.ascontiguousarray(a)) for a in parts)
    return Split(x_train, y_train, x_test, y_test)


def fit_mlp(
    split: Split, seed: int = 0, *, epochs: int = 20, hidden: int = 64, batch_size: int | None = 64
) -> nn.Module:
    """A seeded ``gdsec.models.mlp`` fitted to ``split``'s training rows (Adam, lr 0.01), in eval mode.

    The tests' one recipe for a small trained suspect: features and classes come from ``split``,
    ``seed`` seeds both the initialisation and the batch order; ``batch_size=None`` is full-batch.
    """
    from gdsec import models, train

    n_features, n_classes = split.x_train[0].numel(), int(split.y_train.max()) + 1
    model = models.mlp(n_features, n_classes, hidden=hidden, seed=seed)
    train.train(
        model,
        split.x_train,
        split.y_train,
        optimizer="adam",
        lr=0.01,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        progress=False,
    )
    return model.eval()
