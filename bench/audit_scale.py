"""What does an audit cost? Wall time, CPU time and peak memory of ``gdsec-audit`` by budget and rows.

Two models, each saved as TorchScript with its data as an ``.npz`` in a temporary folder:

* ``digits``: the course's digits CNN (``gdsec.models.digits_cnn``, 16 channels) on the 8x8 digits;
* ``cnn32``: a 3x32x32 CNN of 582,026 parameters (:func:`cnn32`) on the digits upsampled to 32x32
  and given three colour channels (:func:`digits32`; 1,797 rows, no download), as a stand-in for a
  CIFAR-sized model on this machine.

Each run is ``gdsec-audit MODEL DATA --budget B --n-eval N --quiet`` in a fresh process
(``python -m gdsec.audit``), with N trusted rows (the test split holds at least N rows), measured
from outside: wall seconds, CPU seconds (user + system of the child) and peak resident memory
(``ru_maxrss`` of the child). The digits test split has 450 rows, so larger N are capped there.
A measurement, not a test; the machine is shared, so a wall time far above the CPU time means it
was busy.

    python bench/audit_scale.py [--models cnn32,digits] [--budgets quick,standard] [--rows 64,250,500]
        [--time-limit SECONDS] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gdsec import data, models, train

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("cnn32", "digits")
#: The issue's bar for the CNN at 500 rows with ``--budget quick``: 5 minutes, 2 GB.
QUICK_SECONDS, QUICK_MB = 300.0, 2048.0


def cnn32(n_classes: int = 10, *, seed: int = 0) -> nn.Module:
    """A 3x32x32 CNN of 582,026 parameters: three 3x3 convolutions (32, 64, 64; stride 2 twice), 128 hidden."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 8 * 8, 128),
        nn.ReLU(),
        nn.Linear(128, n_classes),
    )


def digits32(*, test_rows: int = 600, seed: int = 0) -> data.Split:
    """The 1,797 digits upsampled to 32x32 (bilinear) with three channels (v, v**2, its mirror), in [0, 1]."""
    whole = data.load_digits(seed=seed)
    x = torch.cat([whole.x_train, whole.x_test]).reshape(-1, 1, 8, 8)
    y = torch.cat([whole.y_train, whole.y_test])
    big = nn.functional.interpolate(x, size=32, mode="bilinear", align_corners=False).clamp(0, 1)
    x3 = torch.cat([big, big**2, big.flip(-1)], 1).contiguous()
    cut = len(x3) - test_rows
    return data.Split(x3[:cut], y[:cut], x3[cut:], y[cut:])


def trained(name: str, split: data.Split, *, seed: int = 0) -> nn.Module:
    """``name``'s model trained on ``split`` (Adam, fixed seed), in eval mode."""
    model = cnn32(seed=seed) if name == "cnn32" else models.digits_cnn(channels=16, seed=seed)
    train.train(
        model,
        split.x_train,
        split.y_train,
        optimizer="adam",
        lr=1e-3 if name == "cnn32" else 3e-3,
        epochs=4 if name == "cnn32" else 10,
        batch_size=64,
        seed=seed,
        progress=False,
    )
    return model.eval()


def saved(name: str, folder: Path) -> tuple[Path, Path, int]:
    """Train ``name``, save it as TorchScript and its data as .npz in ``folder``; (model, data, test rows)."""
    split = digits32() if name == "cnn32" else data.load_digits()
    model = trained(name, split)
    model_path, data_path = folder / f"{name}.pt", folder / f"{name}.npz"
    torch.jit.save(torch.jit.trace(model, split.x_test[:2]), str(model_path))
    np.savez(
        data_path,
        x_train=split.x_train.numpy(),
        y_train=split.y_train.numpy(),
        x_test=split.x_test.numpy(),
        y_test=split.y_test.numpy(),
    )
    return model_path, data_path, len(split.x_test)


def measure(command: list[str]) -> dict[str, float]:
    """Run ``command`` in a child process; its wall seconds, CPU seconds, peak MB and exit status."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    stderr = child.stderr.read().decode() if child.stderr else ""
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_mb": usage.ru_maxrss / 1024,
        "exit": os.waitstatus_to_exitcode(status),
        "stderr": stderr[-500:],
    }


def main() -> int:
    """Audit each model at each budget and row count; print a Markdown table (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: cnn32,digits")
    parser.add_argument("--budgets", default="quick,standard", help="comma-separated budgets")
    parser.add_argument("--rows", default="64,250,500", help="comma-separated trusted row counts")
    parser.add_argument(
        "--time-limit", type=float, help="passed to gdsec-audit with --budget standard"
    )
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()
    names = [m for m in args.models.split(",") if m]
    if any(m not in MODELS for m in names):
        parser.error(f"--models must be among {MODELS}, got {args.models!r}")
    budgets, counts = args.budgets.split(","), [int(r) for r in args.rows.split(",")]
    results = []
    print(
        "| model | budget | rows | wall s | CPU s | peak MB | exit | "
        f"within {QUICK_SECONDS:.0f} s, {QUICK_MB:.0f} MB |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            model_path, data_path, test_rows = saved(name, Path(tmp))
            for budget in budgets:
                for rows in counts:
                    n = min(rows, test_rows)
                    command = [sys.executable, "-m", "gdsec.audit", str(model_path), str(data_path)]
                    command += ["--budget", budget, "--n-eval", str(n), "--quiet"]
                    if budget == "standard" and args.time_limit:
                        command += ["--time-limit", str(args.time_limit)]
                    got = measure(command)
                    within = got["wall_s"] <= QUICK_SECONDS and got["peak_mb"] <= QUICK_MB
                    results.append({"model": name, "budget": budget, "rows": n, **got})
                    print(
                        f"| {name} | {budget} | {n} | {got['wall_s']:.0f} | {got['cpu_s']:.0f} | "
                        f"{got['peak_mb']:.0f} | {got['exit']} | {'yes' if within else 'no'} |",
                        flush=True,
                    )
                    if got["exit"] not in (0, 1, 4):
                        print(f"  stderr: {got['stderr'].strip()}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
