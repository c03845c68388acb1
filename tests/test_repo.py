"""Repository hygiene and chapter conventions that need no execution."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from helpers import NOTEBOOKS, ROOT, in_ci


def _cells(notebook):
    return json.loads(notebook.read_text())["cells"]


def _markdown(notebook):
    return "\n".join("".join(c["source"]) for c in _cells(notebook) if c["cell_type"] == "markdown")


def _code(notebook):
    return "\n".join("".join(c["source"]) for c in _cells(notebook) if c["cell_type"] == "code")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(notebook):
    data = json.loads(notebook.read_text())
    assert data["metadata"]["kernelspec"]["name"] == "python3"
    for cell in data["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{notebook.name} has stored outputs"
            assert cell["execution_count"] is None, f"{notebook.name} has execution counts"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_chapter_follows_the_conventions(notebook):
    markdown, code = _markdown(notebook), _code(notebook)
    assert re.match(r"# \d+\. ", "".join(_cells(notebook)[0]["source"])), "first cell: '# N. Title'"
    assert "Learning objectives" in markdown
    assert "## Checking the chapter's claims" in markdown and "assert " in code
    exercises = re.findall(r":::\{exercise\}\n:label: (\S+)", markdown)
    solutions = re.findall(r"::::?\{solution\} (\S+)\n:class: dropdown", markdown)
    assert len(exercises) >= 3, "at least three exercises"
    assert set(exercises) <= set(solutions), "every exercise needs a hidden (dropdown) solution"
    assert "## Key takeaways" in markdown
    assert "{cite}" in markdown, "cite the sources"
    assert "glue(" in code and "{glue:" in markdown, "glue every cited number"
    assert "gdsec.widgets" in code, "one explorer from gdsec.widgets"


def unglued_keys(markdown: str, code: str) -> set[str]:
    """Keys the prose pastes with ``{glue:...}`` that the code never glues.

    A key counts as glued when it appears as a string literal in the code, or when it starts with the
    literal prefix of an f-string key (``glue(f"ch06_acc_{name}", ...)`` covers ``ch06_acc_clean``).
    """
    used = set(re.findall(r"\{glue(?::[a-z]*)?\}`([A-Za-z0-9_]+)", markdown))
    literals = set(re.findall(r"""["']([A-Za-z0-9_]+)["']""", code))
    # gdsec.book.glue_summary("k", ...) glues k and k_sd / k_std / k_min / k_max / k_n
    for key in re.findall(r"""\bglue_summary\(\s*["']([A-Za-z0-9_]+)["']""", code):
        literals |= {key + suffix for suffix in ("_sd", "_std", "_min", "_max", "_n")}
    prefixes = [p for p in re.findall(r"""\bf["']([A-Za-z0-9_]*)\{""", code) if p]
    return {
        key for key in used if key not in literals and not any(key.startswith(p) for p in prefixes)
    }


def test_unglued_keys_detects_a_missing_key():
    assert unglued_keys("{glue:text}`ch01_a:.1%` and {glue:}`ch01_b`", 'glue("ch01_a", 1)') == {
        "ch01_b"
    }
    assert unglued_keys("{glue:text}`ch01_x_clean`", 'glue(f"ch01_x_{name}", v)') == set()
    assert unglued_keys("{glue:text}`ch01_y`", 'glue(f"ch01_x_{name}", v)') == {"ch01_y"}
    summary = 'glue_summary("ch01_s", values, spread="_std")'
    assert (
        unglued_keys("{glue:text}`ch01_s` {glue:text}`ch01_s_std` {glue:text}`ch01_s_max`", summary)
        == set()
    )
    assert unglued_keys("{glue:text}`ch01_s_x`", summary) == {"ch01_s_x"}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_glued_keys_are_defined(notebook):
    missing = unglued_keys(_markdown(notebook), _code(notebook))
    assert not missing, f"prose cites unglued keys: {sorted(missing)}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_no_measured_percentages_typed_into_prose(notebook):
    prose = re.sub(
        r"\{glue:[a-z]*\}`[^`]*`|\$[^$]*\$|```.*?```", "", _markdown(notebook), flags=re.S
    )
    typed = [
        p
        for p in re.findall(r"\b\d+(?:\.\d+)?\s?%", prose)
        if p.replace(" ", "") not in ("0%", "100%")
    ]
    assert not typed, f"percentages typed into prose (glue them): {typed}"


def test_toc_lists_every_notebook_and_nothing_missing():
    toc = (ROOT / "_toc.yml").read_text()
    listed = re.findall(r"file: (\S+)", toc)
    for notebook in NOTEBOOKS:
        assert f"notebooks/{notebook.stem}" in listed, f"{notebook.name} is not in _toc.yml"
    for entry in listed:
        assert list(ROOT.glob(entry + ".*")), f"_toc.yml lists {entry}, which does not exist"


def test_requirements_are_pinned():
    for name in ("requirements.txt", "requirements-test.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if not line or line.startswith(("-e", "-r", "--")):
                continue
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[A-Za-z0-9_.+\-]+", line), (
                f"{name}: unpinned {line!r}"
            )
    assert "torch==2.13.0" in (ROOT / "requirements.txt").read_text()


def test_gitignore_keeps_build_outputs_out():
    ignored = (ROOT / ".gitignore").read_text()
    for entry in ("_build/", "__pycache__/", ".jupyter_cache/", "node_modules/"):
        assert entry in ignored


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(ROOT / ".venv" / "bin" / "ruff")
    if not shutil.which("ruff"):
        if in_ci():
            pytest.fail("ruff is required (requirements-test.txt)")
        pytest.skip("ruff not installed")
    done = subprocess.run(
        [ruff, "check", "gdsec", "tests", "bench", "notebooks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


#: Imports torch (its own import-time effects are not ours), then ``gdsec``, and prints the version,
#: torch's thread count (the one documented effect) and what the import changed in the import
#: machinery, the environment, the warning filters and the working directory. That no module of the
#: package changes ``sys.path`` either is checked module by module in ``test_architecture.py``.
SIDE_EFFECTS = """
import os, sys, warnings
import torch
def state():
    return {"sys.path": list(sys.path), "sys.meta_path": list(sys.meta_path), "sys.path_hooks": list(sys.path_hooks),
            "os.environ": dict(os.environ), "cwd": os.getcwd(), "warnings.filters": list(warnings.filters)}
before = state()
import gdsec
after = state()
print(gdsec.__version__, torch.get_num_threads())
for key in before:
    if before[key] != after[key]:
        print("changed", key, [x for x in after[key] if x not in before[key]], [x for x in before[key] if x not in after[key]])
"""  # noqa: E501


def _side_effects(script: str = SIDE_EFFECTS) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "GDSEC_TORCH_THREADS"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()


def _version() -> str:
    return re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)


@pytest.mark.integration
def test_package_imports_without_side_effects_on_sys_path():
    version, *changes = _side_effects()
    assert version.split() == [_version(), "1"], (
        f"gdsec.__version__ and torch threads after import: {version}"
    )
    assert not changes, "importing gdsec changed:\n" + "\n".join(changes)
