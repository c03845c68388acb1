"""Independent random streams: one per (seed, purpose), so functions that share a seed never share draws.

Every randomised function in ``gdsec`` takes a ``seed`` and draws from ``random_stream(seed, purpose)``
with a purpose of its own (``"train.order"``, ``"poisoning.flip_labels"``, ...). The same seed and
purpose always give the same draws; another purpose gives a statistically independent stream, so
poisoning rows with ``seed=0`` and training with ``seed=0`` does not put every poisoned row in the
first mini-batch. The derivation is NumPy's ``SeedSequence`` (seed as entropy, the purpose's SHA-256
as spawn key), the standard way to split one seed into independent streams. Used in chapters 1-10.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from gdsec.validation import check_seed

__all__ = ["random_stream", "seeded_global_rng", "stream_seed"]


def stream_seed(seed: int, purpose: str) -> int:
    """The 64-bit seed of the stream for ``purpose`` derived from ``seed`` (deterministic, any machine).

    Used in chapters 1-10.
    """
    seed = check_seed(seed)
    if not isinstance(purpose, str) or not purpose:
        raise ValueError(
            f"purpose must be a non-empty string naming what the draws are for, got {purpose!r}"
        )
    key = int.from_bytes(hashlib.sha256(purpose.encode()).digest()[:8], "little")
    return int(np.random.SeedSequence(seed, spawn_key=(key,)).generate_state(1, dtype=np.uint64)[0])


def random_stream(seed: int, purpose: str) -> torch.Generator:
    """A private CPU ``torch.Generator`` for ``purpose``: same (seed, purpose), same draws; other purposes independent.

    Used in chapters 1-10.
    """
    return torch.Generator().manual_seed(stream_seed(seed, purpose))


@contextmanager
def seeded_global_rng(seed: int, purpose: str) -> Iterator[None]:
    """Seed torch's global RNG with the stream for ``purpose`` inside a fork, restored on exit.

    Only for code that draws from the global RNG by design (layer initialisation, a model's own
    dropout or noise). Used in chapters 1-10.
    """
    derived = stream_seed(seed, purpose)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived)
        yield
