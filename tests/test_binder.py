"""Binder installs exactly the pins readers install, with CPU-only torch (no drift, no CUDA wheels)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)$")
CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"
CUDA_NAMES = re.compile(r"^(nvidia-|cuda|cupy|triton|torch-cuda|jax\[cuda)", re.IGNORECASE)


def _lines(path: Path) -> list[str]:
    return [
        line.split(" #")[0].strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        match = PIN.match(line)
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_binder_has_the_same_pins_with_cpu_torch() -> None:
    main = _pins(_lines(ROOT / "requirements.txt"))
    binder = _pins(_lines(ROOT / "binder" / "requirements.txt"))
    assert "torch" in main and "+" not in main["torch"]
    assert binder["torch"] == f"{main['torch']}+cpu"
    assert {k: v for k, v in binder.items() if k != "torch"} == {
        k: v for k, v in main.items() if k != "torch"
    }


def test_binder_installs_nothing_else() -> None:
    main = _lines(ROOT / "requirements.txt")
    binder = _lines(ROOT / "binder" / "requirements.txt")
    assert CPU_INDEX in binder, "the CPU-only torch index is missing"
    assert "-e ." in binder, "the course package (-e .) is missing"
    unpinned = [line for line in binder if not PIN.match(line) and line not in {CPU_INDEX, "-e ."}]
    assert not unpinned, f"unexpected lines in binder/requirements.txt: {unpinned}"
    extra = (
        set(binder)
        - set(main)
        - {CPU_INDEX}
        - {line for line in binder if line.startswith("torch==")}
    )
    assert not extra, extra


def test_no_cuda_packages() -> None:
    for line in _lines(ROOT / "binder" / "requirements.txt"):
        name = line.split("==")[0]
        assert not CUDA_NAMES.match(name), line
        assert "+cu" not in line, line
        assert "index-url" not in line or line == CPU_INDEX, line
