"""The software and machine the book was built with, as MyST substitutions (``{{ gdsec_python }}`` ...).

Computed once per build at ``config-inited`` from the Python that runs Sphinx, which is also the
environment of the kernels that execute the notebooks (``python3`` kernelspec, same interpreter).
``book/execution.md`` shows them next to ``{nb-exec-table}``.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "numpy", "matplotlib", "ipywidgets", "jupyter-book", "myst-nb", "sphinx")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def _memory_gib() -> str:
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    return "unknown"


def _cpu_path() -> str:
    """The CPU kernel path PyTorch runs here (AVX512, AVX2, DEFAULT, ...), and whether it was forced."""
    try:
        import torch
    except ImportError:
        return "unknown"
    forced = os.environ.get("ATEN_CPU_CAPABILITY")
    return torch.backends.cpu.get_cpu_capability() + (
        " (forced by ATEN_CPU_CAPABILITY)" if forced else ""
    )


def build_info() -> dict[str, str]:
    """Substitution name -> value, describing this interpreter, its key packages and the machine."""
    info = {
        "gdsec_python": f"{platform.python_implementation()} {platform.python_version()}",
        "gdsec_os": platform.platform(terse=True),
        "gdsec_cpu": _cpu_model(),
        "gdsec_cpu_path": _cpu_path(),
        "gdsec_cores": str(
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        ),
        "gdsec_memory": _memory_gib(),
        "gdsec_threads": os.environ.get("GDSEC_TORCH_THREADS", "1"),
    }
    for package in PACKAGES:
        info[f"gdsec_{package.replace('-', '_')}"] = _version(package)
    return info


def _add_substitutions(app: Any, config: Any) -> None:
    config.myst_substitutions = {**build_info(), **dict(config.myst_substitutions or {})}


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", _add_substitutions)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "0.1"}
