"""What a pipeline run is made of: its settings (:class:`PipelineConfig`), what it yields per frame
(:class:`FrameResult`) and what the pipeline lends its two run strategies (:class:`RunContext`:
one source in :mod:`.single_source`, several batched in :mod:`.multi_source`). No torch."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from retina_edge.errors import RetinaEdgeError
from retina_edge.runtime.core.results import Detections
from retina_edge.runtime.video.sources import Frame, ReconnectPolicy
from retina_edge.runtime.video.stats import PipelineStats
from retina_edge.runtime.video.threads import ThreadGroup
from retina_edge.runtime.video.tracking import TrackerOptions

MODES = ("auto", "latest", "every")
#: The longest a batch may wait for the other sources' frames: waiting longer for a stalled camera
#: would stall every other source with it (a file waited 30 s at 1e9).
MAX_BATCH_WAIT_MS = 1000.0


@dataclass(frozen=True)
class PipelineConfig:
    """``mode``: auto (latest for live sources, every for files), latest or every.
    ``queue_size``: frames waiting for inference (and results waiting for the consumer).
    ``max_fps``: cap on the capture rate. ``classes``: keep only these labels (the score threshold
    is the detector's: ``Detector(score_thresh=...)``). ``in_flight``: frames inferred at once
    (None: the detector's ``streams`` for files, 1 for live sources).
    Several sources: ``max_batch`` frames at most per detector call (None: the model's largest
    batch), formed within ``max_batch_wait_ms`` of the first frame. ``tracking``: track IDs (None: off)."""

    mode: str = "auto"
    queue_size: int = 2
    max_fps: float | None = None
    classes: tuple[int, ...] | None = None
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    in_flight: int | None = None
    max_batch: int | None = None
    max_batch_wait_ms: float = 10.0
    tracking: TrackerOptions | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise RetinaEdgeError(f"unknown pipeline mode {self.mode!r}; expected one of {MODES}")
        if self.queue_size < 1:
            raise RetinaEdgeError("queue_size must be at least 1")
        if self.in_flight is not None and self.in_flight < 1:
            raise RetinaEdgeError("in_flight must be at least 1")
        if self.max_batch is not None and self.max_batch < 1:
            raise RetinaEdgeError("max_batch must be at least 1")
        if not 0 <= self.max_batch_wait_ms <= MAX_BATCH_WAIT_MS:
            raise RetinaEdgeError(f"max_batch_wait_ms must be from 0 to {MAX_BATCH_WAIT_MS:.0f} (a batch waiting longer "
                                  f"for one source holds up the others), got {self.max_batch_wait_ms}",
                                  option="max_batch_wait_ms")

    def frames_in_flight(self, detector, *, latest: bool) -> int:  # noqa: ANN001
        """How many frames to infer at once for this detector and source kind."""
        if self.in_flight is not None:
            return self.in_flight
        return 1 if latest else max(1, getattr(detector, "streams", 1))

    def latest(self, source) -> bool:  # noqa: ANN001
        """Whether ``source`` runs in latest-frame mode (live sources under ``auto``)."""
        return self.mode == "latest" or (self.mode == "auto" and getattr(source, "live", False))


@dataclass
class FrameResult:
    """One processed frame of one source: ``index`` counts that source's frames from 0,
    ``timestamp`` is its capture time (wall clock, seconds since the epoch), ``image`` the
    ``(H, W, 3)`` uint8 RGB frame, ``detections`` in the frame's pixels, ``latency_ms`` from capture
    to result, ``inference_ms`` for the detector call. ``source`` is the source's index in the
    pipeline's list of sources and ``source_name`` its spec as given; ``track_ids`` (``(N,)`` int64,
    one per detection, in the detections' order; -1: not yet confirmed) is set when tracking is on,
    else None. ``file_name``: the image's path in its folder, for folder sources."""

    index: int
    timestamp: float
    image: np.ndarray
    detections: Detections
    latency_ms: float
    inference_ms: float
    source: int = 0
    source_name: str = ""
    track_ids: np.ndarray | None = None
    file_name: str | None = None

    @classmethod
    def of(cls, frame: Frame, detections: Detections, inference_ms: float, *, source: int = 0,
           source_name: str = "") -> FrameResult:
        """The result of ``frame``; its latency is counted up to now (:meth:`finish` recounts it)."""
        return cls(frame.index, frame.timestamp, frame.image, detections, 1e3 * (time.time() - frame.timestamp),
                   inference_ms, source, source_name, file_name=frame.name)


@dataclass(frozen=True)
class RunContext:
    """What a run strategy gets from its pipeline: the detector call (``detect``: images -> their
    :class:`Detections`, the class filter applied), the tracker step (``track(result, live)``), the
    stop event, the pipeline's threads, the detector itself (its batch range and streams) and the
    config; ``log`` reports a source's trouble."""

    detector: object
    config: PipelineConfig
    detect: Callable[[list[np.ndarray]], list[Detections]]
    track: Callable[[FrameResult, bool], FrameResult]
    stop: threading.Event
    threads: ThreadGroup
    log: Callable[[str], None]
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, stats: PipelineStats, result: FrameResult) -> None:
        """Add a processed frame to its source's counts (from any inference thread)."""
        with self.lock:
            stats.processed += 1
            stats.inference_ms_total += result.inference_ms
            stats.latencies_ms.append(result.latency_ms)
            stats.finished = time.perf_counter()

    @property
    def max_batch(self) -> int:
        return self.config.max_batch or getattr(self.detector, "max_batch", 1)
