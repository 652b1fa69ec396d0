"""Stand-in CPU cores that a runtime's spinning worker threads hold after its run returned (as
ONNX Runtime's intra-op workers do): a run that starts meanwhile waits for them."""

from __future__ import annotations

import time


class Cores:
    def __init__(self) -> None:
        self.busy_until = 0.0

    def work(self, seconds: float, *, spin_after: float = 0.0) -> None:
        """Wait for the cores, work ``seconds`` on them, then hold them ``spin_after`` more."""
        time.sleep(max(0.0, self.busy_until - time.perf_counter()))
        time.sleep(seconds)
        self.busy_until = time.perf_counter() + spin_after
