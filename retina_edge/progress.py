"""A dependency-free progress line: count, rate, ETA and caller-supplied fields; and how messages
count things (no torch)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def plural(number: int, noun: str) -> str:
    """``1 step``, ``2 steps``, ``0 steps``: a count and its noun, as every message writes one."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """``update(done, **fields)`` redraws one line on a terminal; elsewhere (a log file, CI) it prints
    the same line for the first step, every ``every``-th, the last, and at least every
    ``interval`` seconds, so a log shows a long job moving from its start."""

    def __init__(self, total: int, label: str, *, stream: TextIO | None = None, every: int = 0, enabled: bool = True,
                 interval: float = 10.0) -> None:
        self.total, self.label, self.enabled, self.interval = total, label, enabled, interval
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.every = every or max(1, total // 10)
        self.start = self.last = time.perf_counter()

    def update(self, done: int, **fields: float | str) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        due = done in (1, self.total) or done % self.every == 0 or now - self.last >= self.interval
        if not self.interactive and not due:
            return
        self.last = now
        elapsed = now - self.start
        eta = elapsed / done * (self.total - done) if done else 0.0
        extras = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
        line = f"{self.label} {done}/{self.total} {extras} elapsed {format_duration(elapsed)} ETA {format_duration(eta)}"
        if self.interactive:
            self.stream.write("\r" + line + ("\n" if done == self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
