"""Progress of a ``gdsec-audit`` run: one stderr line per stage, an ETA, and a deadline.

A :class:`Progress` is the ``progress=`` hook of :func:`gdsec.audit.audit`: it prints when a stage
starts and a question ends (elapsed seconds, and an ETA from the questions answered so far), hands
each finding to ``on_finding`` (the command writes its report there), and raises :class:`TimeUp`
at the first stage boundary after ``deadline``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gdsec.audit.report import Finding

__all__ = ["Progress", "TimeUp"]


class TimeUp(Exception):
    """The run's time limit passed before ``stage`` started. Used in chapter 10."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"time limit reached before {stage}")
        self.stage = stage


@dataclass
class Progress:
    """The audit's progress hook: lines through ``say``, findings to ``on_finding``, a deadline.

    ``deadline`` is a ``time.monotonic()`` instant (None: no limit). Taught in chapter 10.
    """

    questions: tuple[str, ...]
    say: Callable[[str], None]
    on_finding: Callable[[Finding], None]
    deadline: float | None = None
    start: float = field(default_factory=time.monotonic)
    _started: float = 0.0
    _spent: list[float] = field(default_factory=list)

    def _eta(self) -> str:
        """The remaining time at the mean pace of the questions answered so far."""
        if not self._spent:
            return ""
        left = len(self.questions) - len(self._spent)
        return f", ETA {left * sum(self._spent) / len(self._spent):.0f} s" if left else ""

    def __call__(self, stage: str, finding: Finding | None) -> None:
        """Report the start of ``stage`` (``finding`` None) or the finding that ends it."""
        now = time.monotonic()
        elapsed = f"{now - self.start:.1f} s"
        if finding is None:
            if self.deadline is not None and now >= self.deadline:
                raise TimeUp(stage)
            self._started = now
            if stage not in self.questions:
                self.say(f"{stage}: started at {elapsed}")
                return
            place = f"[{self.questions.index(stage) + 1}/{len(self.questions)}]"
            self.say(f"{place} {stage}: started at {elapsed}{self._eta()}")
            return
        self._spent.append(now - self._started)
        place = f"[{len(self._spent)}/{len(self.questions)}]"
        self.say(
            f"{place} {stage}: {finding.severity} in {now - self._started:.1f} s "
            f"(elapsed {elapsed}{self._eta()})"
        )
        self.on_finding(finding)
