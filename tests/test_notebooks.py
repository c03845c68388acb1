"""Every chapter notebook runs top to bottom under nbval, with the network cut off, on another CPU path.

PyTorch picks its CPU kernels by the processor's capability (AVX-512, AVX2, ...); the book build runs
the chapters on this machine's native path, and this tier runs them again under
``ATEN_CPU_CAPABILITY=default`` (the portable kernels), so a check cell that holds on one processor
only fails here. ``GDSEC_NBVAL_CPU_CAPABILITY`` picks another path (``avx2``, ``avx512``, or
``native`` for none); an ``ATEN_CPU_CAPABILITY`` already exported for the whole run wins.

Each notebook runs in its own pytest process inside a fresh network namespace (``unshare -n``, with
only the loopback interface up for the kernel's sockets), so a notebook that tries to download
anything fails here. Where network namespaces are not available (not root, not Linux), the notebook
still runs, and the test says so; under CI that is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from helpers import NOTEBOOKS, ROOT, in_ci


def _offline_prefix() -> list[str]:
    """The command prefix that runs a command with no network but loopback, or [] if impossible."""
    if not (shutil.which("unshare") and shutil.which("ip")):
        return []
    probe = subprocess.run(
        ["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, check=False
    )
    return (
        ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"']
        if probe.returncode == 0
        else []
    )


OFFLINE = _offline_prefix()


def _notebook_env() -> dict[str, str]:
    """The environment the notebooks run in: this one, forced onto a non-native CPU kernel path."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("GDSEC_WIDGETS", None)
    path = os.environ.get("GDSEC_NBVAL_CPU_CAPABILITY", "default")
    if path != "native":
        env.setdefault("ATEN_CPU_CAPABILITY", path)
    return env


@pytest.mark.slow
@pytest.mark.xdist_group("notebooks")
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs_offline(notebook, tmp_path):
    if not OFFLINE and in_ci():
        pytest.fail("CI must run notebooks without network: `unshare -n` and `ip` are required")
    env = _notebook_env()
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "-o",
        "addopts=",  # lifts pyproject's "-m unit -p no:nbval": nbval's cells carry no tier marker
        "--nbval",
        "--nbval-current-env",
        "--nbval-cell-timeout=300",
        str(notebook),
    ]
    done = subprocess.run(
        OFFLINE + command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, (
        f"{notebook.name} failed under nbval:\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}"
    )
    if not OFFLINE:
        pytest.skip("ran with network access: unshare -n is not available here")


def test_offline_namespace_really_has_no_network():
    if not OFFLINE:
        if in_ci():
            pytest.fail("unshare -n is required in CI")
        pytest.skip("unshare -n is not available here")
    code = "import socket; s = socket.socket(); s.settimeout(3); s.connect(('1.1.1.1', 80))"
    done = subprocess.run(
        OFFLINE + [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert done.returncode != 0 and "unreachable" in done.stderr.lower()


def test_notebook_kernels_run_on_the_chosen_cpu_path():
    env = _notebook_env()
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    if os.environ.get("GDSEC_NBVAL_CPU_CAPABILITY", "default") == "native":
        pytest.skip(
            "GDSEC_NBVAL_CPU_CAPABILITY=native: the notebooks run on this machine's own path"
        )
    wanted = env["ATEN_CPU_CAPABILITY"]
    assert done.stdout.strip().lower() == wanted.lower(), (
        f"asked for {wanted}, torch runs {done.stdout.strip()}"
    )


def test_chapters_exist():
    assert len(NOTEBOOKS) >= 2, f"expected chapter notebooks in {ROOT / 'notebooks'}"
