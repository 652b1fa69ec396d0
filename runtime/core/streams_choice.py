"""``streams="auto"``: keep several inferences in flight only where that raises frames per second.

Whether N inferences at once beat one depends on the model, the backend and the cores (the gains
measured on 2 and 16 cores differ by an order of magnitude: bench/RESULTS.md), so no fixed rule is
right. A short probe measures
what the pipeline's workers do: whole frames (preprocess, inference, postprocess, the caller's
``work``) per second, with one thread on the backend loaded for one stream and with
``min(cores, MAX_STREAMS)`` threads on the backend loaded for that many, each for about
``PROBE_SECONDS`` after one warm-up frame per thread, interleaved over ``ROUNDS`` rounds, best round
kept; the larger count must win by ``MARGIN``. Timing inference alone would miss the gain: with one
frame in flight a core idles while Python pre- and post-processes, and a small model's pure
inference throughput can even drop with two streams while its frames per second rise. The
winner's loaded backend is handed on, the other closed. The choice is cached beside the backend
choice (same file and key parts, plus the backend), so the probe runs once per model file,
machine and settings.

Meant for files, where frames wait for inference: a detector opened with N streams gives each
inference a share of the cores, so live sources (one frame in flight) should use ``streams=1``.
TensorRT engines run one inference at a time here and never probe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from retina_edge.progress import plural
from retina_edge.resources import let_cores_settle, usable_cores
from retina_edge.runtime.core.backend_choice import cached_entry, probe_key, remember_entry

logger = logging.getLogger("retina_edge.runtime")

MAX_STREAMS = 4
ROUNDS = 2
#: Length of one timed burst (every thread finishes at least one frame, however slow the model).
PROBE_SECONDS = 0.5
#: More streams replace one only when their throughput is at least this much higher.
MARGIN = 0.10


@dataclass(frozen=True)
class StreamsChoice:
    """What ``streams="auto"`` picked and why. ``frames_per_s``: probe throughput (whole frames) per stream count."""

    streams: int
    reason: str
    frames_per_s: dict[int, float]

    def describe(self) -> str:
        rates = ", ".join(f"{plural(count, 'stream')} {rate:.2f} frames/s"
                          for count, rate in sorted(self.frames_per_s.items()))
        return f"{self.streams} ({self.reason}{': ' + rates if rates else ''})"


def candidate_streams() -> int:
    """The stream count tried against one: the usable cores, at most ``MAX_STREAMS``."""
    return min(usable_cores(), MAX_STREAMS)


def choose_streams(path: Path, single: object, load: Callable[[int], object], *, backend: str, settings: dict,
                   work: Callable[[object], object]) -> tuple[StreamsChoice, object]:
    """The stream count for ``path`` on ``backend`` and its loaded backend. ``single``: the backend
    already loaded for one stream; ``load(n)`` loads it for ``n`` (same ``settings``);
    ``work(loaded)``: one frame through preprocessing, ``loaded`` and postprocessing."""
    many = candidate_streams()
    if backend == "tensorrt" or many == 1:
        reason = "one execution context" if backend == "tensorrt" else "one usable core"
        return _logged(path, StreamsChoice(1, reason, {})), single
    key = "streams:" + probe_key(path, {**settings, "backend": backend, "candidate": many})
    entry = cached_entry(key)
    if entry.get("streams") in (1, many):
        choice = StreamsChoice(entry["streams"], "measured earlier on this machine",
                               {int(count): rate for count, rate in entry.get("frames_per_s", {}).items()})
        return _logged(path, choice), single if choice.streams == 1 else _swap(single, load, many)
    loaded = {1: single}
    choice = None
    try:
        loaded[many] = load(many)
        choice = probe_streams(loaded, work)
    finally:
        for count, candidate in loaded.items():
            if choice is None or count != choice.streams:
                candidate.close()
    remember_entry(key, {"streams": choice.streams, "frames_per_s": choice.frames_per_s})
    return _logged(path, choice), loaded[choice.streams]


def probe_streams(loaded: dict[int, object], work: Callable[[object], object]) -> StreamsChoice:
    """Frames per second of each loaded backend (stream count -> backend), as many threads as
    streams, interleaved."""
    for count, backend in loaded.items():
        _frames_per_second(work, backend, count, seconds=0.0)  # warm-up: one frame per thread
    best = {count: 0.0 for count in loaded}
    for _ in range(ROUNDS):
        for count, backend in loaded.items():
            let_cores_settle()  # the other session's spinning workers would eat into this window
            best[count] = max(best[count], _frames_per_second(work, backend, count, seconds=PROBE_SECONDS))
    rates = {count: round(rate, 3) for count, rate in best.items()}
    many = max(rates)
    streams = many if rates[many] >= (1 + MARGIN) * rates[1] else 1
    return StreamsChoice(streams, "probe", rates)


def _frames_per_second(work: Callable[[object], object], backend: object, count: int, *, seconds: float) -> float:
    """Frames per second of ``count`` threads each running ``work(backend)`` until ``seconds`` have
    passed (at least once each); an error in any thread is raised here."""
    done = [0] * count
    start = time.perf_counter()
    deadline = start + seconds

    def loop(slot: int) -> None:
        while not done[slot] or time.perf_counter() < deadline:
            work(backend)
            done[slot] += 1

    with ThreadPoolExecutor(count) as pool:
        for future in [pool.submit(loop, slot) for slot in range(count)]:
            future.result()
    return sum(done) / (time.perf_counter() - start)


def _swap(single: object, load: Callable[[int], object], many: int) -> object:
    """``load(many)`` in place of ``single`` (closed once the new one has loaded)."""
    backend = load(many)
    single.close()
    return backend


def _logged(path: Path, choice: StreamsChoice) -> StreamsChoice:
    logger.info("streams auto for %s: %s", path.name, choice.describe())
    return choice
