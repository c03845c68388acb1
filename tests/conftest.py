"""Fixtures shared by the test suite.

Session fixtures train each small model once per test process; tests must not modify them (train a
copy with ``copy.deepcopy`` when a test needs to). The book is built once per test session (per
xdist group).
"""

from __future__ import annotations

import os

import pytest
import torch

from helpers import build_book, copy_course, fit_mlp, make_blobs_2d

os.environ.setdefault("MPLBACKEND", "Agg")

#: The test tiers, by module: everything not listed here is ``unit`` (fast, no notebook, no browser).
#: ``integration`` sits between ``unit`` and ``notebooks``: comparisons with reference libraries, long
#: training runs and process plumbing (a test joins it with ``@pytest.mark.integration``).
TIERS = {
    "test_attacks_vs_art": "integration",
    "test_notebooks": "notebooks",
    "test_book": "book",
    "test_offline_assets": "book",
    "test_browser_book": "browser",
    "test_jupyterlab": "browser",
}


def pytest_ignore_collect(collection_path, config: pytest.Config) -> bool | None:
    """With ``-m unit`` (plain ``pytest``), skip importing the modules of the other tiers."""
    if config.getoption("markexpr", "").strip() != "unit":
        return None
    return True if TIERS.get(collection_path.stem, "unit") != "unit" else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its tier (unit, integration, notebooks, book, browser); ``-m unit`` is the fast loop."""
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        tier = TIERS.get(module, "unit")
        if tier == "unit" and item.get_closest_marker("integration"):
            tier = "integration"
        if tier in ("unit", "integration") and item.get_closest_marker("slow"):
            tier = "notebooks"
        if tier == "unit" and "torchattacks" in getattr(item, "fixturenames", ()):
            raise pytest.UsageError(
                f"{item.nodeid} installs torchattacks: mark it @pytest.mark.integration"
            )
        item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def digits():
    """The course's digits split (1,347 training and 450 test images, 8x8, values in [0, 1])."""
    from gdsec import data

    return data.load_digits()


@pytest.fixture(scope="session")
def digits_cnn(digits) -> torch.nn.Module:
    """A seeded digits CNN (8 channels) trained with Adam for 10 epochs: about 97 % test accuracy."""
    from gdsec import models, train

    model = models.digits_cnn(channels=8, seed=0)
    train.train(
        model,
        digits.x_train,
        digits.y_train,
        optimizer="adam",
        lr=3e-3,
        epochs=10,
        batch_size=64,
        seed=0,
        progress=False,
    )
    return model


@pytest.fixture(scope="session")
def digits_mlp(digits) -> torch.nn.Module:
    """A seeded 64-32-10 MLP trained with Adam for 30 epochs: about 96 % test accuracy."""
    return fit_mlp(digits, 0, epochs=30, hidden=32)


@pytest.fixture(scope="session")
def blobs_mlp():
    """(model, x_test, y_test): an MLP on 2-D blobs with 3 classes, for tabular (N, d) inputs."""
    from gdsec import models, train

    split = make_blobs_2d(200, n_classes=3, seed=1)
    model = models.mlp(2, 3, hidden=16, seed=0)
    train.train(
        model, split.x_train, split.y_train, optimizer="adam", lr=0.05, epochs=60, progress=False
    )
    return model, split.x_test, split.y_test


TORCHATTACKS = "torchattacks==3.5.1"


@pytest.fixture(scope="session")
def torchattacks():
    """torchattacks 3.5.1, the reference ensemble's parts, installed on first use into a cache folder.

    Only ``integration`` tests may use it (installing is not a unit test's business). It is
    installed with ``--no-deps`` (its pins would pull torchvision and an old ``requests``); it
    imports and runs without them. Skipped locally when PyPI cannot be reached, a failure in CI.
    """
    import importlib
    import subprocess
    import sys
    from pathlib import Path

    from helpers import in_ci

    if importlib.util.find_spec("torchattacks") is None:
        target = (
            Path(os.environ.get("GDSEC_TEST_CACHE", Path.home() / ".cache" / "gdsec-test"))
            / TORCHATTACKS
        )
        if not (target / "torchattacks").is_dir():
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--no-deps",
                    "--target",
                    str(target),
                    TORCHATTACKS,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                message = f"could not install {TORCHATTACKS}: {done.stderr.strip()[-300:]}"
                pytest.fail(message) if in_ci() else pytest.skip(message)
        sys.path.insert(0, str(target))
    return importlib.import_module("torchattacks")


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
