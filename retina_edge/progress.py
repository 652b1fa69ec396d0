"""A dependency-free progress line: count, rate, ETA and caller-supplied fields (no torch)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """``update(done, **fields)`` redraws one line on a terminal, or prints every ``every``-th step
    elsewhere (CI logs stay short)."""

    def __init__(self, total: int, label: str, *, stream: TextIO | None = None, every: int = 0, enabled: bool = True) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.every = every or max(1, total // 10)
        self.start = time.perf_counter()

    def update(self, done: int, **fields: float | str) -> None:
        if not self.enabled or (not self.interactive and done % self.every and done != self.total):
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / done * (self.total - done) if done else 0.0
        extras = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
        line = f"{self.label} {done}/{self.total} {extras} elapsed {format_duration(elapsed)} ETA {format_duration(eta)}"
        if self.interactive:
            self.stream.write("\r" + line + ("\n" if done == self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
