"""Several sources, one detector: frames of all sources batched into one ``Detector.detect`` call.

    with Pipeline(Detector("model.onnx")) as pipeline:
        for result in pipeline.run(["front.mp4", "rtsp://rear/stream", "/dev/video0"]):
            print(result.source, result.source_name, result.index, len(result.detections))

Each source has a capture thread (a :class:`Feed`) that keeps its waiting frames: a live source
keeps only its newest frame (an older one waiting is dropped and counted), a file keeps up to a
few frames and waits for room (nothing lost, order kept). One inference thread asks the
:class:`Batcher` for a batch: it takes frames round-robin, one per source per round, starting after
the source served last and preferring the sources served least so far (so no source starves
another), and once the first frame is in hand waits at
most ``max_batch_wait`` for the sources not yet in the batch before running it. A live source that
fails is reopened with its own backoff; one lost for good, or a file that fails, ends only itself.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from retina_edge.runtime.video.run import FrameResult, RunContext
from retina_edge.runtime.video.sources import CaptureOptions, Frame, capture_frames, close_source, close_unread
from retina_edge.runtime.video.stats import PipelineStats
from retina_edge.runtime.video.threads import END, consume, put

logger = logging.getLogger("retina_edge.pipeline")


@dataclass(frozen=True)
class FeedOptions:
    """How a :class:`Feed` keeps frames: ``latest`` keeps only the newest frame (live sources);
    otherwise up to ``capacity`` frames wait (files). ``capture``: rate cap and reconnects."""

    latest: bool
    capacity: int = 2
    capture: CaptureOptions = CaptureOptions()


class Feed:
    """One source's capture thread and its waiting frames; ``stats`` is the source's
    :class:`~retina_edge.runtime.video.stats.PipelineStats`. All waiting goes through the shared
    ``condition`` so the batcher wakes as soon as any source has a frame."""

    def __init__(self, number: int, source, options: FeedOptions, stats, condition: threading.Condition,  # noqa: ANN001
                 stop: threading.Event, log=logger.warning) -> None:  # noqa: ANN001
        self.number, self.source, self.options, self.stats = number, source, options, stats
        self.frames: deque = deque()
        self.done = False
        self._condition, self._stop, self._log = condition, stop, log
        self.thread = threading.Thread(target=self._run, name=f"retina-edge-capture-{number}", daemon=True)

    def _run(self) -> None:
        try:
            self._capture()
        except Exception as error:  # noqa: BLE001 - one source failing ends that source only
            self._log(f"source {self.source.spec} failed: {error}")
            self.stats.failed = True
        finally:
            close_source(self.source, self._log)  # here: never while a read of this thread is in progress
            with self._condition:
                self.done = True
                self._condition.notify_all()

    def _capture(self) -> None:
        for frame in capture_frames(self.source, self.options.capture, self._stop, self.stats, self._log):
            self._offer(frame)

    def _offer(self, frame: Frame) -> None:
        with self._condition:
            if self.options.latest:
                self.stats.dropped += len(self.frames)
                self.frames.clear()
            else:
                while len(self.frames) >= self.options.capacity and not self._stop.is_set():
                    self._condition.wait(0.05)
            self.frames.append(frame)
            self._condition.notify_all()

    @property
    def exhausted(self) -> bool:
        """Ended and nothing left waiting (call holding the condition)."""
        return self.done and not self.frames


class Batcher:
    """Forms batches of ``(feed number, frame)`` from the feeds (see the module docstring)."""

    def __init__(self, feeds: list[Feed], condition: threading.Condition, stop: threading.Event, *,
                 max_batch: int, max_wait_s: float) -> None:
        self.feeds, self._condition, self._stop = feeds, condition, stop
        self.max_batch, self.max_wait_s = max(1, max_batch), max_wait_s
        self._next = 0  # the feed that comes first in the next round, among the least served
        self._served = [0] * len(feeds)

    def next_batch(self) -> list[tuple[int, Frame]]:
        """The next batch, or ``[]`` once every feed is exhausted or the run is stopped."""
        with self._condition:
            while not any(feed.frames for feed in self.feeds):
                if self._stop.is_set() or all(feed.exhausted for feed in self.feeds):
                    return []
                self._condition.wait(0.05)
            batch = self._round(self.max_batch)
            deadline = time.perf_counter() + self.max_wait_s
            while len(batch) < self.max_batch and not self._stop.is_set():
                waiting_for = self._awaited(batch)
                if not waiting_for:
                    break
                if any(self.feeds[n].frames for n in waiting_for):
                    batch += self._round(self.max_batch - len(batch), only=waiting_for)
                    continue
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            while len(batch) < self.max_batch and (more := self._round(self.max_batch - len(batch))):
                batch += more  # room left: further frames of sources already in the batch (files)
            self._condition.notify_all()  # file feeds waiting for room
            return batch

    def _awaited(self, batch: list[tuple[int, Frame]]) -> list[int]:
        """Feeds not in ``batch`` that may still deliver: the batch waits (bounded) for them."""
        present = {number for number, _ in batch}
        return [feed.number for feed in self.feeds if feed.number not in present and not feed.exhausted]

    def _round(self, room: int, only: list[int] | None = None) -> list[tuple[int, Frame]]:
        """One frame from each feed with one waiting: the least-served feeds first (a source that had
        no frame ready for a while catches up), ties in round-robin order from ``_next``."""
        count = len(self.feeds)
        order = sorted(range(count), key=lambda step: (self._served[(self._next + step) % count], step))
        taken = []
        for step in order:
            feed = self.feeds[(self._next + step) % count]
            if len(taken) == room:
                break
            if feed.frames and (only is None or feed.number in only):
                taken.append((feed.number, feed.frames.popleft()))
                self._served[feed.number] += 1
        if taken:
            self._next = (taken[-1][0] + 1) % count
        return taken


class BatchedRun:
    """Iterate to run ``sources`` (opened) under ``context``, their frames batched into one detector
    call; ``stats[i]`` collects source ``i``'s counts. Yields each batch's results in batch order."""

    def __init__(self, context: RunContext, sources: list, stats: list[PipelineStats]) -> None:
        self.context, self.sources, self.stats = context, sources, stats

    def __iter__(self) -> Iterator[FrameResult]:
        context = self.context
        condition = threading.Condition()
        feeds = [Feed(number, source, self._feed_options(source), self.stats[number], condition, context.stop,
                      context.log) for number, source in enumerate(self.sources)]
        batcher = Batcher(feeds, condition, context.stop, max_batch=context.max_batch,
                          max_wait_s=context.config.max_batch_wait_ms / 1e3)
        results: queue.Queue = queue.Queue(context.config.queue_size)
        infer = threading.Thread(target=self._infer_batches, args=(batcher, results), name="retina-edge-batch",
                                 daemon=True)
        try:
            with context.threads.running([feed.thread for feed in feeds] + [infer], stop=context.stop,
                                         queues=(results,)):
                for batch in consume(results):
                    yield from batch
        finally:
            for feed in feeds:
                close_unread(feed.source, feed.thread, context.log)

    def _feed_options(self, source) -> FeedOptions:  # noqa: ANN001
        config = self.context.config
        # A file keeps enough frames waiting to fill a batch on its own.
        return FeedOptions(latest=config.latest(source), capacity=max(config.queue_size, self.context.max_batch),
                           capture=CaptureOptions(max_fps=config.max_fps, reconnect=config.reconnect))

    def _infer_batches(self, batcher: Batcher, results: queue.Queue) -> None:
        """Batches through the detector until every source ended or stop; each batch's results go to
        the consumer as one list. Every way out ends with the end marker the consumer waits for."""
        stop = self.context.stop
        try:
            while batch := batcher.next_batch():
                if not put(results, self._infer_batch(batcher, batch), stop):
                    return
        except Exception as error:  # noqa: BLE001 - surfaced to the consumer
            put(results, error, stop, force=True)
        finally:
            put(results, END, stop, force=True)

    def _infer_batch(self, batcher: Batcher, batch: list[tuple[int, Frame]]) -> list[FrameResult]:
        start = time.perf_counter()
        found = self.context.detect([frame.image for _, frame in batch])
        inference_ms = 1e3 * (time.perf_counter() - start)
        results = []
        for (number, frame), detections in zip(batch, found):
            feed = batcher.feeds[number]
            result = FrameResult.of(frame, detections, inference_ms, source=number,
                                    source_name=str(getattr(feed.source, "spec", number)))
            result = self.context.track(result, feed.options.latest)
            result.latency_ms = 1e3 * (time.time() - frame.timestamp)  # the tracker's time included
            self.context.count(feed.stats, result)
            results.append(result)
        return results
