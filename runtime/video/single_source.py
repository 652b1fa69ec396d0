"""One source through the detector: a capture thread, a dispatch thread and ``in_flight``
inference workers, joined by bounded queues; results come out in frame order (no torch).

Live sources run in latest-frame mode: when inference falls behind, the oldest waiting frame is
dropped (and counted), so latency never grows into a backlog, and a source that stops delivering
is reopened with backoff. Files run in every-frame mode: capture waits for inference and the end
of the file ends the run.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from retina_edge.runtime.video.run import FrameResult, RunContext
from retina_edge.runtime.video.sources import CaptureOptions, Frame, capture_frames, close_source, close_unread
from retina_edge.runtime.video.stats import PipelineStats
from retina_edge.runtime.video.threads import END, consume, put


class SingleSourceRun:
    """Iterate to run ``source`` (opened) under ``context``; ``stats`` collects its counts."""

    def __init__(self, context: RunContext, source, stats: PipelineStats) -> None:  # noqa: ANN001
        self.context, self.source, self.stats = context, source, stats
        self.live = getattr(source, "live", False)
        self.latest = context.config.latest(source)
        self.name = str(getattr(source, "spec", source))

    def __iter__(self) -> Iterator[FrameResult]:
        config, stop = self.context.config, self.context.stop
        in_flight = config.frames_in_flight(self.context.detector, latest=self.latest)
        frames: queue.Queue = queue.Queue(config.queue_size)
        # Results hold futures in frame order: up to in_flight running, queue_size finished and waiting.
        results: queue.Queue = queue.Queue(config.queue_size + in_flight)
        workers = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="retina-edge-infer")
        threads = [threading.Thread(target=self._capture, args=(frames,), name="retina-edge-capture", daemon=True),
                   threading.Thread(target=self._dispatch, args=(frames, results, workers, in_flight),
                                    name="retina-edge-dispatch", daemon=True)]
        try:
            with self.context.threads.running(threads, stop=stop, queues=(frames, results)):
                for future in consume(results):
                    result = future.result()
                    result.source_name = self.name
                    yield self.context.track(result, self.live)
        finally:
            workers.shutdown(wait=True, cancel_futures=True)
            close_unread(self.source, threads[0], self.context.log)

    def _capture(self, frames: queue.Queue) -> None:
        stop, config = self.context.stop, self.context.config
        options = CaptureOptions(max_fps=config.max_fps, reconnect=config.reconnect)
        try:
            for frame in capture_frames(self.source, options, stop, self.stats, self.context.log):
                if not self._offer(frames, frame):
                    break
        except Exception as error:  # noqa: BLE001 - surfaced to the consumer by the dispatch thread
            put(frames, error, stop)
        finally:
            close_source(self.source, self.context.log)  # here: never while a read of this thread is in progress
            put(frames, END, stop, force=True)

    def _offer(self, frames: queue.Queue, frame: Frame) -> bool:
        """Queue ``frame``: in latest mode replacing the oldest waiting one (counted as dropped),
        else waiting for room; False once the run is stopped."""
        if not self.latest:
            return put(frames, frame, self.context.stop)
        while True:
            try:
                frames.put_nowait(frame)
                return True
            except queue.Full:
                try:
                    frames.get_nowait()
                    self.stats.dropped += 1
                except queue.Empty:
                    pass

    def _dispatch(self, frames: queue.Queue, results: queue.Queue, workers: ThreadPoolExecutor, in_flight: int) -> None:
        """Hand frames to the workers, at most ``in_flight`` at a time, and their futures on in order.
        Every way out (end of source, error, stop) ends with the end marker the consumer waits for."""
        stop, slots = self.context.stop, threading.Semaphore(in_flight)
        try:
            while True:
                # A slot first, then the frame: in latest mode the frame taken is the newest one
                # when a worker is free, not one that aged while waiting for a worker.
                while not slots.acquire(timeout=0.05):
                    if stop.is_set():
                        return
                item = frames.get()
                if item is END:
                    return
                if isinstance(item, BaseException):
                    put(results, item, stop, force=True)
                    return
                future = workers.submit(self._infer_frame, item)
                future.add_done_callback(lambda _: slots.release())
                if not put(results, future, stop):
                    return
        except Exception as error:  # noqa: BLE001 - surfaced to the consumer
            put(results, error, stop, force=True)
        finally:
            put(results, END, stop, force=True)

    def _infer_frame(self, frame: Frame) -> FrameResult:
        start = time.perf_counter()
        (detections,) = self.context.detect([frame.image])
        result = FrameResult.of(frame, detections, 1e3 * (time.perf_counter() - start))
        self.context.count(self.stats, result)
        return result
