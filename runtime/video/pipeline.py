"""Real-time detection pipeline: capture and inference overlap in threads joined by bounded queues.

    from retina_edge.runtime import Detector
    from retina_edge.runtime.video import Pipeline

    with Pipeline(Detector("model.onnx")) as pipeline:
        for result in pipeline.run("0"):               # camera 0; or a file, URL, GStreamer string
            robot.act(result.detections)               # boxes in frame pixels, class names, scores

    future = pipeline.submit(rgb_frame)                # or: your loop owns capture
    future.add_done_callback(lambda f: publish(f.result().detections))   # a FrameResult, as run yields

Live sources run in "latest frame" mode: when inference falls behind, the oldest waiting frame is
dropped (and counted), so latency never grows into a backlog; a live source that fails is
reopened with backoff. Files run in "every frame" mode: capture waits for inference, nothing is
dropped, and the end of the file ends the run.

Several inferences in flight: a detector opened with ``streams=N`` (OpenVINO throughput streams,
or ONNX Runtime runs on the cores split N ways) can work on N frames at once. Files then keep N
frames in flight (``in_flight``, default: the detector's ``streams``), which raises frames per
second where the backend has cores to spare (``Detector(options=BackendOptions(streams="auto"))`` measures whether it
does); results are still yielded in frame order. Live sources keep one in flight by default, since
a second frame in flight waits behind the first and only adds latency.

Several sources: ``run([spec, spec, ...])`` runs them all through the one detector, their frames
batched into one detector call (see :mod:`retina_edge.runtime.video.multi_source`; one source runs as
:mod:`retina_edge.runtime.video.single_source` says); each result says which
source it came from (``source``, ``source_name``) and ``source_stats`` holds each source's counts.
Tracking (``PipelineConfig(tracking=TrackerOptions())``) gives each detection a track ID, per source.

``stop()`` (from any thread or a signal handler) ends ``run`` cleanly; every result already yielded has been handed over, so callers that write
each result as it comes lose nothing. ``close()`` joins every thread the pipeline started. A source
is closed by its capture thread as that thread ends, never from another thread while it reads: a
stalled stream whose read outlasts the stop is closed when the read returns (the run says so).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from retina_edge.runtime.core.results import Detections
from retina_edge.runtime.video.multi_source import BatchedRun
from retina_edge.runtime.video.run import FrameResult, PipelineConfig, RunContext
from retina_edge.runtime.video.single_source import SingleSourceRun
from retina_edge.runtime.video.sources import Frame, open_source, open_sources
from retina_edge.runtime.video.stats import PipelineStats
from retina_edge.runtime.video.threads import ThreadGroup
from retina_edge.runtime.video.tracking import Tracker, make_tracker

logger = logging.getLogger("retina_edge.pipeline")

class Pipeline:
    """Runs a :class:`~retina_edge.runtime.Detector` over frame sources (see the module docstring)."""

    def __init__(self, detector, config: PipelineConfig | None = None) -> None:  # noqa: ANN001
        """``detector``: a :class:`~retina_edge.runtime.Detector`, or a model path, which the pipeline
        then opens and closes itself (a detector passed in stays the caller's to close)."""
        self._owns_detector = isinstance(detector, (str, os.PathLike))
        if self._owns_detector:
            from retina_edge.runtime.core.detector import Detector

            detector = Detector(detector)
        self.detector = detector
        self.config = config or PipelineConfig()
        self.source_stats: list[PipelineStats] = [PipelineStats()]
        self._trackers: dict[int, Tracker] = {}
        self._stop = threading.Event()
        self._threads = ThreadGroup()
        self._executor: ThreadPoolExecutor | None = None
        self._slots = threading.BoundedSemaphore(self.config.queue_size + 1)
        self._lock = threading.Lock()
        self._submitted = 0
        self._submit_tracker: Tracker | None = None

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.close()

    @property
    def stats(self) -> PipelineStats:
        """The counts of the run's one source, or of all its sources together."""
        parts = self.source_stats
        return parts[0] if len(parts) == 1 else PipelineStats.combined(parts)

    def _detect_many(self, images: list[np.ndarray]) -> list[Detections]:
        found = self.detector.detect(images)
        if self.config.classes is not None:
            found = [detections.filter(classes=self.config.classes) for detections in found]
        return found

    def _track(self, result: FrameResult, live: bool) -> FrameResult:
        """Give ``result`` its track IDs (one tracker per source, fed in frame order); a live source's
        capture times pace the tracker's motion model, since it may drop frames."""
        if self.config.tracking is None:
            return result
        tracker = self._trackers.get(result.source)
        if tracker is None:
            tracker = self._trackers[result.source] = make_tracker(self.config.tracking)
        result.track_ids = tracker.update(result.detections, result.timestamp if live else None, result.image)
        return result

    def stop(self) -> None:
        """End the current ``run`` after the frame in hand; safe from any thread or signal handler."""
        self._stop.set()

    def run(self, source_spec, *, log=logger.warning) -> Iterator[FrameResult]:  # noqa: ANN001
        """Yield a :class:`FrameResult` per processed frame, in order, until the source ends or
        :meth:`stop` is called. ``source_spec``: anything :func:`open_source` takes, or a source;
        or a list of those: every source through the one detector, until all have ended."""
        many = isinstance(source_spec, (list, tuple))
        sources = open_sources(source_spec) if many else [
            open_source(source_spec) if isinstance(source_spec, (str, int)) else source_spec]
        self._stop.clear()
        self.source_stats, self._trackers = [PipelineStats() for _ in sources], {}
        context = RunContext(self.detector, self.config, self._detect_many, self._track, self._stop, self._threads, log)
        yield from (BatchedRun(context, sources, self.source_stats) if many
                    else SingleSourceRun(context, sources[0], self.source_stats[0]))

    def submit(self, image: np.ndarray, timestamp: float | None = None) -> Future:
        """Detect ``image`` (``(H, W, 3)`` uint8 RGB, a frame you captured) in a background thread;
        returns a Future of its :class:`FrameResult`, as :meth:`run` yields them: ``index`` counts the
        frames submitted from 0, ``timestamp`` is the capture time given (default: the call's),
        ``latency_ms`` runs from it to the result, and with tracking on, ``track_ids`` come from one
        tracker fed the submitted frames in the order submitted.

        Blocks while ``queue_size + 1`` frames are already pending, so a fast caller cannot build
        a backlog. ``future.add_done_callback(fn)`` gives the callback form. Thread-safe.
        """
        timestamp = time.time() if timestamp is None else timestamp
        self._slots.acquire()  # before the lock: a caller waiting for a slot holds up no index
        try:
            # One lock from the index to the queue: frames reach the one worker in index order.
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="retina-edge-submit")
                future = self._executor.submit(self._detect_submitted, Frame(self._submitted, timestamp, image))
                self._submitted += 1
        except BaseException:  # not queued (an executor shut down): its slot is free again
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        return future

    def _detect_submitted(self, frame: Frame) -> FrameResult:
        start = time.perf_counter()
        result = FrameResult.of(frame, self._detect_many([frame.image])[0], 1e3 * (time.perf_counter() - start))
        if self.config.tracking is not None:
            self._submit_tracker = self._submit_tracker or make_tracker(self.config.tracking)
            result.track_ids = self._submit_tracker.update(result.detections, frame.timestamp, frame.image)
        result.latency_ms = 1e3 * (time.time() - frame.timestamp)
        return result

    def close(self) -> None:
        """Stop everything and join all threads this pipeline started."""
        self._stop.set()
        with self._lock:
            executor, self._executor = self._executor, None
        self._threads.join_all()
        if executor is not None:
            executor.shutdown(wait=True)
        if self._owns_detector:
            self.detector.close()
