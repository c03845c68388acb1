"""Execute each chapter notebook in a fresh kernel; print wall seconds and peak memory per notebook.

A measurement, not a test:  python bench/notebooks.py [notebooks/NN_name.ipynb ...]
Wall time is what the budget is about; kernel CPU time (user + system) is printed beside it because
these machines are shared: a wall time far above the CPU time means the machine was busy.
The budget per notebook is 45 s and 1.5 GB on 2 cores; the whole course, 5 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_SECONDS, BUDGET_MB, BUDGET_TOTAL_SECONDS = 45.0, 1536.0, 300.0

RUNNER = r"""
import json, resource, sys, time
import nbformat
from nbclient import NotebookClient
path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
start = time.perf_counter()
NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
seconds = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024}))
"""  # noqa: E501


def measure(notebook: Path) -> dict[str, float]:
    """Run ``notebook`` top to bottom in a fresh kernel (as the book build does); return seconds and peak MB."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("GDSEC_WIDGETS", None)
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(notebook), str(notebook.parent)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{notebook.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    """Measure the given notebooks (default: all chapters) and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args()
    notebooks = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    rows, total, cpu = [], 0.0, 0.0
    print(
        f"| notebook | wall s | kernel CPU s | peak MB | within budget ({BUDGET_SECONDS:.0f} s, {BUDGET_MB:.0f} MB) |"
    )
    print("|---|---:|---:|---:|---|")
    for notebook in notebooks:
        result = measure(notebook.resolve())
        total += result["seconds"]
        ok = result["seconds"] <= BUDGET_SECONDS and result["peak_mb"] <= BUDGET_MB
        rows.append(ok)
        cpu += result["cpu_seconds"]
        print(
            f"| {notebook.name} | {result['seconds']:.1f} | {result['cpu_seconds']:.1f} | {result['peak_mb']:.0f} | "
            f"{'yes' if ok else 'NO'} |",
            flush=True,
        )
    print(
        f"| **total** | {total:.1f} | {cpu:.1f} | | {'yes' if total <= BUDGET_TOTAL_SECONDS and all(rows) else 'NO'} "
        f"(course ≤ {BUDGET_TOTAL_SECONDS:.0f} s) |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
