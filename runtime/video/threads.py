"""The threads of a pipeline run and the queues between them: started and joined in one place, and
puts that give up when the run is stopped (no torch)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

#: The marker that ends a queue of results: every way out of a producer thread puts it.
END = object()
#: How long ``stop`` waits for each thread before leaving it (daemon threads end with the process).
JOIN_TIMEOUT_S = 10.0


def put(q: queue.Queue, item, stop: threading.Event, *, force: bool = False) -> bool:  # noqa: ANN001
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


def drain(q: queue.Queue) -> None:
    """Empty ``q`` (unblocks producers waiting on a full queue)."""
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return


def consume(results: queue.Queue) -> Iterator:
    """The items of ``results`` until :data:`END`; an exception put there is raised here, in the
    consumer's thread."""
    while (item := results.get()) is not END:
        if isinstance(item, BaseException):
            raise item
        yield item


class ThreadGroup:
    """The threads a pipeline started: each run starts its own through :meth:`running`, and
    :meth:`join_all` (the pipeline's ``close``, from any thread) joins whatever is still alive."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    @contextmanager
    def running(self, threads: Sequence[threading.Thread], *, stop: threading.Event,
                queues: Sequence[queue.Queue] = ()) -> Iterator[None]:
        """Start ``threads``; on leaving, set ``stop``, empty ``queues`` (producers blocked on them
        see the stop) and join the threads."""
        with self._lock:
            self._threads.extend(threads)
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            stop.set()
            for q in queues:
                drain(q)
            for thread in threads:
                thread.join(timeout=JOIN_TIMEOUT_S)
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()]

    def join_all(self) -> None:
        with self._lock:
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout=JOIN_TIMEOUT_S)
