"""Count the code a reader of each chapter sees: lines in code cells without a ``hide-input`` tag.

A measurement, not a test:  python bench/notebook_lines.py [notebooks/NN_name.ipynb ...]
Counts non-blank, non-comment lines (as the round-2 architecture review did), and of them the
lines that call a glue function (``glue(``, ``glue_many(``, a chapter's ``glue_seeds(``, ...) and ``print(``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GLUE = re.compile(r"\bglue\w*\(")
PRINT = re.compile(r"\bprint\(")


def count(path: Path) -> dict[str, int]:
    """Code cells, code lines, hidden lines, and the visible lines with their glue and print calls."""
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    totals = dict.fromkeys(("cells", "lines", "hidden", "visible", "glue", "print"), 0)
    for cell in cells:
        lines = [line for line in "".join(cell["source"]).splitlines() if line.strip()]
        lines = [line for line in lines if not line.strip().startswith("#")]
        totals["cells"] += 1
        totals["lines"] += len(lines)
        if "hide-input" in cell["metadata"].get("tags", []):
            totals["hidden"] += len(lines)
            continue
        totals["visible"] += len(lines)
        totals["glue"] += sum(bool(GLUE.search(line)) for line in lines)
        totals["print"] += sum(bool(PRINT.search(line)) for line in lines)
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    paths = parser.parse_args().notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    header = ("cells", "lines", "hidden", "visible", "glue", "print")
    print(f"| notebook | {' | '.join(header)} |\n|---|{'---|' * len(header)}")
    sums = dict.fromkeys(header, 0)
    for path in paths:
        totals = count(path)
        sums = {k: sums[k] + totals[k] for k in header}
        print(f"| {path.stem} | {' | '.join(str(totals[k]) for k in header)} |")
    print(f"| all | {' | '.join(str(sums[k]) for k in header)} |")


if __name__ == "__main__":
    main()
