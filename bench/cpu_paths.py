"""Execute the chapters under several CPU kernel paths and list every glued value or check that differs.

A measurement, not a test:  python bench/cpu_paths.py [--paths native default] [--out DIR] [notebooks ...]

PyTorch picks its CPU kernels by the processor's capability (AVX-512, AVX2, or the portable
``default`` path); ``ATEN_CPU_CAPABILITY`` forces one. A claim the book teaches must not depend on
which path ran it. For each path this executes every chapter in a fresh kernel (errors allowed, so
every failing cell is seen), re-runs each chapter's claim-checking cells (five asserts or more)
one statement at a time (so every failing claim is seen, not only the first), records the glued
values, and prints: per chapter, the failures and failing claims per path and every glued value
not the same on all paths.
The seconds are the chapter's own run, without the re-run of its claims; CPU time includes both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RUNNER = r"""
import ast, json, resource, sys, time
import nbformat
from nbclient import NotebookClient
path, folder = sys.argv[1], sys.argv[2]
nb = nbformat.read(path, as_version=4)
start = time.perf_counter()
client = NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                        resources={"metadata": {"path": folder}})
glued, errors, claims = {}, [], []
with client.setup_kernel():
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            client.execute_cell(cell, index)
    seconds = time.perf_counter() - start
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                data = out.get("data", {})
                glued[name] = next((v for k, v in data.items() if k.endswith("text/plain")), None)
            if out.get("output_type") == "error":
                errors.append({"cell": index, "error": f"{out['ename']}: {out['evalue']}"[:400]})
    # the claim-checking cells once more, one statement at a time, so every failing claim is seen
    # (nbclient stores each executed cell back at its index, so the outputs are read above, first)
    for index, cell in enumerate(list(nb.cells)):
        asserts = sum(line.startswith("assert ") for line in cell.source.splitlines())
        if cell.cell_type != "code" or asserts < 5:
            continue
        for statement in ast.parse(cell.source).body:
            probe = nbformat.v4.new_code_cell(ast.get_source_segment(cell.source, statement))
            client.execute_cell(probe, index)
            for out in probe.outputs:
                if out.get("output_type") == "error":
                    claims.append({"cell": index, "line": statement.lineno, "error": f"{out['ename']}: {out['evalue']}"[:600]})
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                  "peak_mb": usage.ru_maxrss / 1024, "glued": glued, "errors": errors, "claims": claims}))
"""  # noqa: E501


def run(notebook: Path, path: str) -> dict:
    """Execute ``notebook`` in a fresh kernel on CPU path ``path`` ("native" or a capability name)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MPLBACKEND": "Agg"}
    env.pop("GDSEC_WIDGETS", None)
    env.pop("ATEN_CPU_CAPABILITY", None)
    if path != "native":
        env["ATEN_CPU_CAPABILITY"] = path
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(notebook), str(notebook.parent)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        return {
            "glued": {},
            "errors": [{"cell": -1, "error": done.stderr[-400:]}],
            "claims": [],
            "seconds": 0.0,
            "cpu_seconds": 0.0,
            "peak_mb": 0.0,
        }
    return json.loads(done.stdout.strip().splitlines()[-1])


def differing(results: dict[str, dict]) -> list[tuple[str, list[str]]]:
    """The glued keys whose value is not the same on every path, with each path's value."""
    keys = sorted(set().union(*(r["glued"] for r in results.values())))
    rows = []
    for key in keys:
        values = [str(r["glued"].get(key)) for r in results.values()]
        if len(set(values)) > 1:
            rows.append((key, values))
    return rows


def main() -> int:
    """Run every chapter on every path (two at a time) and print the differences as Markdown."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--paths", nargs="+", default=["native", "default"])
    parser.add_argument("--out", type=Path, help="folder for one JSON file per notebook and path")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    notebooks = [nb.resolve() for nb in args.notebooks] or sorted(
        (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")
    )
    jobs = [(nb, path) for nb in notebooks for path in args.paths]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = dict(zip(jobs, pool.map(lambda job: run(*job), jobs), strict=True))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for (nb, path), result in results.items():
            (args.out / f"{nb.stem}.{path}.json").write_text(json.dumps(result, indent=1))
    for nb in notebooks:
        per_path = {path: results[(nb, path)] for path in args.paths}
        print(f"\n## {nb.name}")
        for path, result in per_path.items():
            failed = (
                "; ".join(f"cell {e['cell']}: {e['error'][:200]}" for e in result["errors"])
                or "none"
            )
            print(
                f"- {path}: {result['seconds']:.1f} s wall, {result['cpu_seconds']:.1f} s CPU, "
                f"{result['peak_mb']:.0f} MB; failures: {failed}"
            )
            for claim in result["claims"]:
                print(
                    f"  - claim that fails on {path} (cell {claim['cell']}, line {claim['line']}): "
                    f"{claim['error'][:300]}"
                )
        rows = differing(per_path)
        print(
            f"- glued values that differ between paths: {len(rows)} of {len(per_path[args.paths[0]]['glued'])}"
        )
        for key, values in rows:
            print(
                f"  - `{key}`: "
                + " | ".join(f"{p}={v}" for p, v in zip(args.paths, values, strict=True))
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
