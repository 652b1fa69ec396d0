"""Per-result outputs of a pipeline run ("sinks"): JSON lines and one annotated video per source.

A sink has ``write(result)`` (a :class:`~retina_edge.runtime.video.run.FrameResult`, called in the
order results come) and ``close()`` (finalises the output; called once, also after an error or a
stop by signal). Each write leaves its output complete up to that result: a JSON line is written
whole (or, on a full disk, not at all), a video frame is in the file's stream; ``close`` finalises
the video's index. Both write beside their name under a temporary one (``.NAME.*.tmp``,
``.NAME.*.tmp.mp4``, where the lines can be followed during the run) and ``close`` puts the output
in place: a process killed outright leaves an earlier output of that name as it was.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Protocol

from retina_edge.atomic import StagedFile
from retina_edge.runtime.video.draw import DISPLAY_SCORE, draw_result
from retina_edge.runtime.video.video_writer import Mp4Writer


class Sink(Protocol):
    def write(self, result) -> None: ...  # noqa: ANN001, D102

    def close(self) -> None: ...  # noqa: D102


def result_record(result) -> dict:  # noqa: ANN001
    """A result as one JSON object: ``source`` (index), ``spec`` (as given), ``frame`` (that source's
    frame index), ``file`` (folder sources), ``timestamp`` (capture, seconds since the epoch),
    ``latency_ms`` and ``detections`` (box x1y1x2y2 pixels, score, category_id, name, and
    ``track_id`` when tracking: -1 for a detection not yet confirmed as a track)."""
    detections = result.detections.to_json()
    if result.track_ids is not None:
        for record, track_id in zip(detections, result.track_ids):
            record["track_id"] = int(track_id)
    record = {"source": result.source, "spec": result.source_name, "frame": result.index}
    if result.file_name is not None:
        record["file"] = result.file_name
    record.update(timestamp=round(result.timestamp, 4), latency_ms=round(result.latency_ms, 1), detections=detections)
    return record


class JsonlSink:
    """One JSON line per result (:func:`result_record`), each written whole as it comes into a
    temporary file beside ``path`` (folders are created); :meth:`close` puts it in place. A write
    that fails (a full disk) takes back its partial line and raises naming ``path``: the file keeps
    complete lines. :attr:`lines` counts the lines written."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._staged = StagedFile(self.path)
        try:
            self._fd: int | None = os.open(self._staged.path, os.O_WRONLY)
        except BaseException:  # no descriptor (too many open files): no temporary file left behind either
            self._staged.discard()
            raise
        self._size = self.lines = 0

    def write(self, result) -> None:  # noqa: ANN001
        line = (json.dumps(result_record(result)) + "\n").encode()
        rest = memoryview(line)
        try:
            while rest:  # a write may take part of it (a file-size limit reached)
                rest = rest[os.write(self._fd, rest):]
        except OSError as error:
            os.ftruncate(self._fd, self._size)
            os.lseek(self._fd, self._size, os.SEEK_SET)
            raise OSError(error.errno, error.strerror or str(error), str(self.path)) from None
        self._size += len(line)
        self.lines += 1

    def close(self) -> None:
        """Put the lines written in place (once; later calls do nothing)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        os.close(fd)
        self._staged.commit()


class VideoSink:
    """One annotated MP4 per source: ``paths[i]`` at ``fps[i]`` (a number, or a function giving it at
    the source's first frame) for source ``i``; each frame shows the detections scoring at least
    ``min_score`` (coloured by track ID when tracked) and the source's delivered rate so far. A
    frame of another size than its source's first is letterboxed into it (:class:`Mp4Writer`);
    ``writers[i]`` counts what went into each file."""

    def __init__(self, paths: list[Path], fps: list, *, min_score: float = DISPLAY_SCORE) -> None:
        self.writers = [Mp4Writer(path, rate) for path, rate in zip(paths, fps)]
        self.min_score = min_score
        self._first: dict[int, float] = {}

    def write(self, result) -> None:  # noqa: ANN001
        writer = self.writers[result.source]
        now = time.perf_counter()
        elapsed = now - self._first.setdefault(result.source, now)
        rate = writer.frames / elapsed if elapsed > 0 else None
        writer.write(draw_result(result, rate, min_score=self.min_score))

    def close(self) -> None:
        close_all(self.writers)


def close_all(sinks: list) -> None:
    """Close every sink, even when one fails to; the first failure is raised after the rest closed."""
    failure = None
    for sink in sinks:
        try:
            sink.close()
        except Exception as error:  # noqa: BLE001 - re-raised below, once every output is closed
            failure = failure or error
    if failure is not None:
        raise failure
