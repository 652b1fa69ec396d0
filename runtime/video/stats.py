"""A pipeline source's counts: frames captured, processed and dropped, reconnects, how it ended,
frames per second and latency percentiles (no torch)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: Latency percentiles are over the most recent frames (bounded memory on runs of any length).
LATENCY_WINDOW = 10_000


@dataclass
class PipelineStats:
    """One source's counts (or, from :meth:`combined`, all sources')."""

    captured: int = 0
    processed: int = 0
    dropped: int = 0
    reconnects: int = 0
    #: A live source failed for good after its reconnect attempts.
    gave_up: bool = False
    #: Reading the source raised (a broken file, say); the error was logged.
    failed: bool = False
    #: The run was stopped (a signal, ``Pipeline.stop``) while the source was still delivering.
    stopped: bool = False
    inference_ms_total: float = 0.0
    #: When the source opened (a live source opens in its run) and when its last frame was processed.
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    @property
    def fps(self) -> float:
        """Frames processed per second of the source's own run, from its opening to its last frame
        (a source lost early is not diluted by the rest of the run)."""
        elapsed = (self.finished or time.perf_counter()) - self.started
        return self.processed / elapsed if elapsed > 0 else 0.0

    @property
    def ended_normally(self) -> bool:
        return not (self.gave_up or self.failed)

    @property
    def status(self) -> str:
        """``ok`` (ended by itself), ``stopped`` (by the run's stop), ``lost`` (a live source given up
        after its reconnect attempts), ``unreachable`` (the same, never having delivered a frame),
        ``failed`` (a read error)."""
        if self.gave_up:
            return "lost" if self.captured else "unreachable"
        return "failed" if self.failed else "stopped" if self.stopped else "ok"

    def latency_ms(self, percent: float) -> float | None:
        return float(np.percentile(self.latencies_ms, percent)) if self.latencies_ms else None

    def summary(self) -> dict:
        """Plain numbers for reports: frames, dropped, reconnects, fps, latency p50/p99 (ms), status."""
        status = self.status
        p50, p99 = self.latency_ms(50), self.latency_ms(99)
        return {"frames": self.processed, "captured": self.captured, "dropped": self.dropped,
                "reconnects": self.reconnects, "fps": round(self.fps, 2), "status": status,
                "latency_p50_ms": None if p50 is None else round(p50, 1),
                "latency_p99_ms": None if p99 is None else round(p99, 1)}

    @classmethod
    def combined(cls, parts: Sequence[PipelineStats]) -> PipelineStats:
        total = cls(started=min(p.started for p in parts), gave_up=any(p.gave_up for p in parts),
                    failed=any(p.failed for p in parts), stopped=any(p.stopped for p in parts))
        for name in ("captured", "processed", "dropped", "reconnects", "inference_ms_total"):
            setattr(total, name, sum(getattr(p, name) for p in parts))
        ends = [p.finished for p in parts if p.finished is not None]
        total.finished = max(ends) if ends else None
        for part in parts:
            total.latencies_ms.extend(part.latencies_ms)
        return total
