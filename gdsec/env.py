"""Where the code runs: a live Jupyter front end (JupyterLab, Binder) or a headless execution (book, CI)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

import torch

__all__ = ["configure_threads", "is_live_frontend", "progress"]

T = TypeVar("T")


def is_live_frontend() -> bool:
    """True in a kernel started by a Jupyter server (JupyterLab, Notebook, Binder); False when headless.

    ``GDSEC_WIDGETS=live`` or ``=static`` overrides the guess. A server-started kernel carries
    ``JPY_SESSION_NAME``; kernels run by nbclient (Jupyter Book, nbval, CI) do not.
    Used in chapters 1, 2, 3, 4, 5, 6, 7, 8, 9 and 10.
    """
    forced = os.environ.get("GDSEC_WIDGETS", "").strip().lower()
    if forced in {"live", "static"}:
        return forced == "live"
    if os.environ.get("CI"):
        return False
    return "JPY_SESSION_NAME" in os.environ


def progress(iterable: Iterable[T], **kwargs: object) -> Iterator[T] | Iterable[T]:
    """Wrap a loop in a ``tqdm.auto`` bar in a live front end; a bare iterable otherwise (no text leaks).

    Used in chapters 3, 4, 5, 6, 7, 8, 9 and 10.
    """
    if not is_live_frontend():
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


def configure_threads(threads: int | None = None) -> int:
    """Set PyTorch's intra-op threads to ``threads``, else ``GDSEC_TORCH_THREADS`` (default 1); return the count.

    The course's models are tiny: one thread is faster than two (no synchronisation), and parallel
    notebook runs (CI, ``pytest -n 2``) do not fight over the cores. ``import gdsec`` calls it once with
    no argument, so every chapter runs on one thread unless ``GDSEC_TORCH_THREADS`` says otherwise;
    call it yourself (``configure_threads(4)``) to change the count later, e.g. for a larger model in
    your own script, or after setting the variable. Bad values raise ``ValueError``.
    Used in chapters 1, 2, 3, 4, 5, 6, 7, 8, 9 and 10.
    """
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        torch.set_num_threads(threads)
        return threads
    raw = os.environ.get("GDSEC_TORCH_THREADS", "1")
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"GDSEC_TORCH_THREADS must be a positive integer, got {raw!r}")
    torch.set_num_threads(int(raw))
    return int(raw)
