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

Several sources: ``run([spec, spec, ...])`` runs them all through the one detector, their frames
batched into one detector call (see :mod:`retina_edge.runtime.multi_source`); each result says which
source it came from (``source``, ``source_name``) and ``source_stats`` holds each source's counts.
Tracking (``PipelineConfig(tracking=TrackerOptions())``) gives each detection a track ID, per source.

``stop()`` (from any thread or a signal handler) ends ``run`` cleanly; every result already yielded has been handed over, so callers that write
each result as it comes lose nothing. ``close()`` joins every thread the pipeline started.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from retina_edge.errors import RetinaEdgeError
from retina_edge.runtime.results import Detections
from retina_edge.runtime.multi_source import Batcher, Feed, FeedOptions, drain
from retina_edge.runtime.sources import Frame, ReconnectPolicy, open_source, reopen
from retina_edge.runtime.tracking import Tracker, TrackerOptions, make_tracker

logger = logging.getLogger("retina_edge.pipeline")
_END = object()
MODES = ("auto", "latest", "every")


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
        if (self.max_batch is not None and self.max_batch < 1) or self.max_batch_wait_ms < 0:
            raise RetinaEdgeError("max_batch must be at least 1 and max_batch_wait_ms at least 0")

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
    inference_ms_total: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    @property
    def fps(self) -> float:
        elapsed = (self.finished or time.perf_counter()) - self.started
        return self.processed / elapsed if elapsed > 0 else 0.0

    @property
    def ended_normally(self) -> bool:
        return not (self.gave_up or self.failed)

    def latency_ms(self, percent: float) -> float | None:
        return float(np.percentile(self.latencies_ms, percent)) if self.latencies_ms else None

    def summary(self) -> dict:
        """Plain numbers for reports: frames, dropped, reconnects, fps, latency p50/p99 (ms), status."""
        status = "lost" if self.gave_up else "failed" if self.failed else "ok"
        p50, p99 = self.latency_ms(50), self.latency_ms(99)
        return {"frames": self.processed, "captured": self.captured, "dropped": self.dropped,
                "reconnects": self.reconnects, "fps": round(self.fps, 2), "status": status,
                "latency_p50_ms": None if p50 is None else round(p50, 1),
                "latency_p99_ms": None if p99 is None else round(p99, 1)}

    @classmethod
    def combined(cls, parts: Sequence[PipelineStats]) -> PipelineStats:
        total = cls(started=min(p.started for p in parts), gave_up=any(p.gave_up for p in parts),
                    failed=any(p.failed for p in parts))
        for name in ("captured", "processed", "dropped", "reconnects", "inference_ms_total"):
            setattr(total, name, sum(getattr(p, name) for p in parts))
        ends = [p.finished for p in parts]
        total.finished = None if None in ends else max(ends)
        for part in parts:
            total.latencies_ms.extend(part.latencies_ms)
        return total


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
        self.source_stats: list[PipelineStats] = [PipelineStats()]
        self._trackers: dict[int, Tracker] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._executor: ThreadPoolExecutor | None = None
        self._slots = threading.BoundedSemaphore(self.config.queue_size + 1)
        self._lock = threading.Lock()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.close()

    @property
    def stats(self) -> PipelineStats:
        """The counts of the run's one source, or of all its sources together."""
        parts = self.source_stats
        return parts[0] if len(parts) == 1 else PipelineStats.combined(parts)

    def _detect(self, image: np.ndarray) -> Detections:
        return self._detect_many([image])[0]

    def _detect_many(self, images: list[np.ndarray]) -> list[Detections]:
        found = self.detector.detect(images)
        if self.config.classes is not None:
            found = [detections.filter(classes=self.config.classes) for detections in found]
        return found

    def _track(self, result: FrameResult, *, live: bool) -> FrameResult:
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
        if isinstance(source_spec, (list, tuple)):
            return self._run_many(source_spec, log)
        return self._run_one(source_spec, log)

    def _latest(self, source) -> bool:  # noqa: ANN001
        return self.config.mode == "latest" or (self.config.mode == "auto" and getattr(source, "live", False))

    def _run_one(self, source_spec, log) -> Iterator[FrameResult]:  # noqa: ANN001
        source = open_source(source_spec) if isinstance(source_spec, (str, int)) else source_spec
        live = getattr(source, "live", False)
        latest = self._latest(source)
        self._stop.clear()
        self.source_stats, self._trackers = [PipelineStats()], {}
        name = str(getattr(source, "spec", source_spec))
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
                result = item.result()
                result.source_name = name
                yield self._track(result, live=live)
        finally:
            self._stop.set()
            for q in (frames, results):  # unblock producers waiting on full queues
                drain(q)
            for thread in threads:
                thread.join(timeout=10)
            workers.shutdown(wait=True, cancel_futures=True)
            source.close()
            self.stats.finished = time.perf_counter()
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
                frame = Frame(index, time.time(), image, getattr(source, "current_name", None))
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
        result = FrameResult(frame.index, frame.timestamp, frame.image, detections,
                             1e3 * (time.time() - frame.timestamp), inference_ms, file_name=frame.name)
        self._count(self.stats, result)
        return result

    def _count(self, stats: PipelineStats, result: FrameResult) -> None:
        with self._lock:
            stats.processed += 1
            stats.inference_ms_total += result.inference_ms
            stats.latencies_ms.append(result.latency_ms)

    def _run_many(self, specs: Sequence, log) -> Iterator[FrameResult]:  # noqa: ANN001
        sources = open_sources(specs)
        self._stop.clear()
        self.source_stats, self._trackers = [PipelineStats() for _ in sources], {}
        condition = threading.Condition()
        feeds = [Feed(number, source, self._feed_options(source), self.source_stats[number], condition, self._stop, log)
                 for number, source in enumerate(sources)]
        max_batch = self.config.max_batch or getattr(self.detector, "max_batch", 1)
        batcher = Batcher(feeds, condition, self._stop, max_batch=max_batch,
                          max_wait_s=self.config.max_batch_wait_ms / 1e3)
        results: queue.Queue = queue.Queue(self.config.queue_size)
        infer = threading.Thread(target=self._infer_batches, args=(batcher, results), name="retina-edge-batch",
                                 daemon=True)
        threads = [feed.thread for feed in feeds] + [infer]
        with self._lock:
            self._threads.extend(threads)
        for thread in threads:
            thread.start()
        try:
            while (item := results.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield from item
        finally:
            self._stop.set()
            drain(results)
            for thread in threads:
                thread.join(timeout=10)
            for source, stats in zip(sources, self.source_stats):
                source.close()
                stats.finished = time.perf_counter()
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()]

    def _feed_options(self, source) -> FeedOptions:  # noqa: ANN001
        max_batch = self.config.max_batch or getattr(self.detector, "max_batch", 1)
        # A file keeps enough frames waiting to fill a batch on its own.
        return FeedOptions(latest=self._latest(source), capacity=max(self.config.queue_size, max_batch),
                           max_fps=self.config.max_fps, reconnect=self.config.reconnect)

    def _infer_batches(self, batcher: Batcher, results: queue.Queue) -> None:
        """Batches through the detector until every source ended or stop; each batch's results go to
        the consumer as one list. Every way out ends with the end marker the consumer waits for."""
        try:
            while batch := batcher.next_batch():
                if not _put(results, self._infer_batch(batcher, batch), self._stop):
                    return
        except Exception as error:  # noqa: BLE001 - surfaced to the consumer
            _put(results, error, self._stop, force=True)
        finally:
            _put(results, _END, self._stop, force=True)

    def _infer_batch(self, batcher: Batcher, batch: list[tuple[int, Frame]]) -> list[FrameResult]:
        start = time.perf_counter()
        found = self._detect_many([frame.image for _, frame in batch])
        inference_ms = 1e3 * (time.perf_counter() - start)
        results = []
        for (number, frame), detections in zip(batch, found):
            feed = batcher.feeds[number]
            result = FrameResult(frame.index, frame.timestamp, frame.image, detections, 0.0, inference_ms, number,
                                 str(getattr(feed.source, "spec", number)), file_name=frame.name)
            result = self._track(result, live=feed.options.latest)
            result.latency_ms = 1e3 * (time.time() - frame.timestamp)
            self._count(feed.stats, result)
            results.append(result)
        return results

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


def open_sources(specs: Sequence) -> list:
    """Each spec opened (:func:`open_source`) or taken as a source; if one cannot open, those
    opened already are closed and the error raised."""
    sources = []
    try:
        for spec in specs:
            sources.append(open_source(spec) if isinstance(spec, (str, int)) else spec)
    except BaseException:
        for source in sources:
            source.close()
        raise
    if not sources:
        raise RetinaEdgeError("no sources given")
    return sources
