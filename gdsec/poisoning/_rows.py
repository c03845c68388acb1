"""Row counting shared by the poisoning tools."""

from __future__ import annotations


def count_rows(fraction: float, n: int) -> int:
    """Number of rows a fraction of ``n`` stands for: ``round(fraction * n)`` (Python rounding).

    Used in chapter 3.
    """
    return int(round(fraction * n))
