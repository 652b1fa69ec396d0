"""Real-time detection pipeline: capture and inference overlap in threads joined by bounded queues.

    from retina_edge.runtime import Detector
    from retina_edge.runtime.pipeline import Pipeline

    with Pipeline(Detector("model.onnx")) as pipeline:
        for result in pipeline.run("0"):               # camera 0; or a file, URL, GStreamer string
            robot.act(result.detections)               # boxes in frame pixels, class names, scores

    future = pipeline.submit(rgb_frame)                # or: your loop owns capture
    future.add_done_callback(lambda f: publish(f.result()))

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

``stop()`` (from any thread or a signal handler) ends ``run`` cleanly; every result already yielded has been handed over, so callers that write
each result as it comes lose nothing. ``close()`` joins every thread the pipeline started.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from retina_edge.errors import RetinaEdgeError
from retina_edge.runtime.results import Detections
from retina_edge.runtime.sources import Frame, ReconnectPolicy, open_source, reopen

logger = logging.getLogger("retina_edge.pipeline")
_END = object()
MODES = ("auto", "latest", "every")


@dataclass(frozen=True)
class PipelineConfig:
    """``mode``: auto (latest for live sources, every for files), latest or every.
    ``queue_size``: frames waiting for inference (and results waiting for the consumer).
    ``max_fps``: cap on the capture rate. ``classes``: keep only these labels (the score threshold
    is the detector's: ``Detector(score_thresh=...)``). ``in_flight``: frames inferred at once
    (None: the detector's ``streams`` for files, 1 for live sources)."""

    mode: str = "auto"
    queue_size: int = 2
    max_fps: float | None = None
    classes: tuple[int, ...] | None = None
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    in_flight: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise RetinaEdgeError(f"unknown pipeline mode {self.mode!r}; expected one of {MODES}")
        if self.queue_size < 1:
            raise RetinaEdgeError("queue_size must be at least 1")
        if self.in_flight is not None and self.in_flight < 1:
            raise RetinaEdgeError("in_flight must be at least 1")

    def frames_in_flight(self, detector, *, latest: bool) -> int:  # noqa: ANN001
        """How many frames to infer at once for this detector and source kind."""
        if self.in_flight is not None:
            return self.in_flight
        return 1 if latest else max(1, getattr(detector, "streams", 1))


@dataclass
class FrameResult:
    """One processed frame of one source: ``index`` counts that source's frames from 0,
    ``timestamp`` is its capture time (wall clock, seconds since the epoch), ``image`` the
    ``(H, W, 3)`` uint8 RGB frame, ``detections`` in the frame's pixels, ``latency_ms`` from capture
    to result, ``inference_ms`` for the detector call. ``source`` is the source's index in the
    pipeline's list of sources and ``source_name`` its spec as given; ``track_ids`` (``(N,)`` int64,
    one per detection, in the detections' order) is set when tracking is on, else None."""

    index: int
    timestamp: float
    image: np.ndarray
    detections: Detections
    latency_ms: float
    inference_ms: float
    source: int = 0
    source_name: str = ""
    track_ids: np.ndarray | None = None


@dataclass
class PipelineStats:
    captured: int = 0
    processed: int = 0
    dropped: int = 0
    reconnects: int = 0
    #: A live source failed for good after its reconnect attempts.
    gave_up: bool = False
    inference_ms_total: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    @property
    def fps(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.processed / elapsed if elapsed > 0 else 0.0


class Pipeline:
    """Runs a :class:`~retina_edge.runtime.Detector` over a frame source (see the module docstring)."""

    def __init__(self, detector, config: PipelineConfig | None = None) -> None:  # noqa: ANN001
        """``detector``: a :class:`~retina_edge.runtime.Detector`, or a model path, which the pipeline
        then opens and closes itself (a detector passed in stays the caller's to close)."""
        self._owns_detector = isinstance(detector, (str, os.PathLike))
        if self._owns_detector:
            from retina_edge.runtime.detector import Detector

            detector = Detector(detector)
        self.detector = detector
        self.config = config or PipelineConfig()
        self.stats = PipelineStats()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._executor: ThreadPoolExecutor | None = None
        self._slots = threading.BoundedSemaphore(self.config.queue_size + 1)
        self._lock = threading.Lock()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.close()

    def _detect(self, image: np.ndarray) -> Detections:
        detections = self.detector.detect([image])[0]
        if self.config.classes is not None:
            detections = detections.filter(classes=self.config.classes)
        return detections

    def stop(self) -> None:
        """End the current ``run`` after the frame in hand; safe from any thread or signal handler."""
        self._stop.set()

    def run(self, source_spec, *, log=logger.warning) -> Iterator[FrameResult]:  # noqa: ANN001
        """Yield a :class:`FrameResult` per processed frame, in order, until the source ends or
        :meth:`stop` is called. ``source_spec``: anything :func:`open_source` takes, or a source."""
        source = open_source(source_spec) if isinstance(source_spec, (str, int)) else source_spec
        live = getattr(source, "live", False)
        latest = self.config.mode == "latest" or (self.config.mode == "auto" and live)
        self._stop.clear()
        self.stats = PipelineStats()
        in_flight = self.config.frames_in_flight(self.detector, latest=latest)
        frames: queue.Queue = queue.Queue(self.config.queue_size)
        # Results hold futures in frame order: up to in_flight running, queue_size finished and waiting.
        results: queue.Queue = queue.Queue(self.config.queue_size + in_flight)
        workers = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="retina-edge-infer")
        threads = [
            threading.Thread(target=self._capture, args=(source, frames, latest, live, log), name="retina-edge-capture", daemon=True),
            threading.Thread(target=self._dispatch, args=(frames, results, workers, in_flight), name="retina-edge-dispatch",
                             daemon=True),
        ]
        with self._lock:
            self._threads.extend(threads)
        for thread in threads:
            thread.start()
        try:
            while True:
                item = results.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item.result()
        finally:
            self._stop.set()
            for q in (frames, results):  # unblock producers waiting on full queues
                _drain(q)
            for thread in threads:
                thread.join(timeout=10)
            workers.shutdown(wait=True, cancel_futures=True)
            source.close()
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()]

    def _capture(self, source, frames: queue.Queue, latest: bool, live: bool, log) -> None:  # noqa: ANN001
        interval = 1.0 / self.config.max_fps if self.config.max_fps else 0.0
        next_time = time.perf_counter()
        index = 0
        try:
            while not self._stop.is_set():
                if interval:
                    delay = next_time - time.perf_counter()
                    if delay > 0 and self._stop.wait(delay):
                        break
                    next_time = max(next_time + interval, time.perf_counter())
                image = source.read()
                if image is None:
                    if live and not self._stop.is_set():
                        log(f"source {source.spec} stopped delivering frames; reopening")
                        if reopen(source, self.config.reconnect, self._stop, log):
                            self.stats.reconnects += 1
                            continue
                        log(f"giving up on {source.spec} after {self.config.reconnect.attempts} attempts")
                        self.stats.gave_up = True
                    break
                frame = Frame(index, time.time(), image)
                index += 1
                self.stats.captured += 1
                if latest:
                    while True:
                        try:
                            frames.put_nowait(frame)
                            break
                        except queue.Full:
                            try:
                                frames.get_nowait()
                                self.stats.dropped += 1
                            except queue.Empty:
                                pass
                elif not _put(frames, frame, self._stop):
                    break
        except Exception as error:  # noqa: BLE001 - surfaced to the consumer by the inference thread
            _put(frames, error, self._stop)
        finally:
            _put(frames, _END, self._stop, force=True)

    def _dispatch(self, frames: queue.Queue, results: queue.Queue, workers: ThreadPoolExecutor, in_flight: int) -> None:
        """Hand frames to the workers, at most ``in_flight`` at a time, and their futures on in order.
        Every way out (end of source, error, stop) ends with the end marker the consumer waits for."""
        slots = threading.Semaphore(in_flight)
        try:
            while True:
                # A slot first, then the frame: in latest mode the frame taken is the newest one
                # when a worker is free, not one that aged while waiting for a worker.
                while not slots.acquire(timeout=0.05):
                    if self._stop.is_set():
                        return
                item = frames.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    _put(results, item, self._stop, force=True)
                    return
                future = workers.submit(self._infer_frame, item)
                future.add_done_callback(lambda _: slots.release())
                if not _put(results, future, self._stop):
                    return
        except Exception as error:  # noqa: BLE001 - surfaced to the consumer
            _put(results, error, self._stop, force=True)
        finally:
            _put(results, _END, self._stop, force=True)

    def _infer_frame(self, frame: Frame) -> FrameResult:
        start = time.perf_counter()
        detections = self._detect(frame.image)
        inference_ms = 1e3 * (time.perf_counter() - start)
        with self._lock:
            self.stats.processed += 1
            self.stats.inference_ms_total += inference_ms
        return FrameResult(frame.index, frame.timestamp, frame.image, detections,
                           1e3 * (time.time() - frame.timestamp), inference_ms)

    def submit(self, image: np.ndarray) -> Future:
        """Detect in a background thread; returns a Future of :class:`Detections`.

        Blocks while ``queue_size + 1`` frames are already pending, so a fast caller cannot build
        a backlog. ``future.add_done_callback(fn)`` gives the callback form. Thread-safe.
        """
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="retina-edge-submit")
            executor = self._executor
        self._slots.acquire()
        future = executor.submit(self._detect, image)
        future.add_done_callback(lambda _: self._slots.release())
        return future

    def close(self) -> None:
        """Stop everything and join all threads this pipeline started."""
        self._stop.set()
        with self._lock:
            threads, self._threads = self._threads, []
            executor, self._executor = self._executor, None
        for thread in threads:
            thread.join(timeout=10)
        if executor is not None:
            executor.shutdown(wait=True)
        if self._owns_detector:
            self.detector.close()


def _put(q: queue.Queue, item, stop: threading.Event, *, force: bool = False) -> bool:  # noqa: ANN001
    """Put, waiting while the queue is full; give up when ``stop`` is set (unless ``force``,
    which makes room by discarding the oldest item so end markers always get through)."""
    while True:
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            if stop.is_set():
                if not force:
                    return False
                try:
                    q.get_nowait()
                except queue.Empty:
                    pass


def _drain(q: queue.Queue) -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return
