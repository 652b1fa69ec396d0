"""Sinks for the pipeline's results: ``write(result)`` per processed frame, ``close()`` at the end.

    from retina_edge.robotics.sinks import open_sink

    with open_sink(sources, record="run.mcap", foxglove_port=8765) as sink:   # either or both
        for result in pipeline.run(...):                                      # FrameResult
            sink.write(result)

A :class:`FrameSink` turns a :class:`~retina_edge.runtime.video.run.FrameResult` into its channels'
messages once (:func:`~retina_edge.robotics.channels.frame_messages`) and hands them to each
output: an MCAP recording, a live Foxglove server. ``close`` (or leaving the ``with`` block, by an
error or KeyboardInterrupt too) closes every output, finishing the recording.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from retina_edge.errors import DataError, RetinaEdgeError
from retina_edge.robotics.channels import MessageOptions, channels_for, frame_messages, topics
from retina_edge.runtime.video import FrameResult

logger = logging.getLogger(__name__)


class FrameSink:
    """Writes each result of ``source_names``' sources to every output (objects with
    ``wants(topic)``, ``write(messages)`` and ``close()``: :class:`~.mcap_output.McapOutput`,
    :class:`~.foxglove_output.FoxgloveOutput`)."""

    def __init__(self, *, source_names: Sequence[str], outputs: Sequence, options: MessageOptions = MessageOptions()) -> None:
        self.source_names = list(source_names)
        self.outputs = list(outputs)
        self.options = options
        #: Frames written, per source.
        self.frames = [0] * len(self.source_names)

    def __enter__(self) -> FrameSink:
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.close()

    def write(self, result: FrameResult) -> None:
        if not 0 <= result.source < len(self.source_names):
            raise DataError(f"result of source {result.source}, but this sink was opened for "
                            f"{len(self.source_names)} sources")
        # Only what some output takes is encoded: a live view nobody watches costs no JPEG.
        wanted = [topic for topic in topics(result.source) if any(output.wants(topic) for output in self.outputs)]
        if wanted:
            frame = frame_messages(result, self.options, wanted)
            for output in self.outputs:
                output.write(frame)
        self.frames[result.source] += 1

    def close(self) -> None:
        """Close every output, even when one fails: the first failure is raised afterwards (said
        once, by whoever catches it), any further one logged."""
        failure = None
        for output in self.outputs:
            try:
                output.close()
            except Exception as error:  # noqa: BLE001 - the other outputs still close
                if failure is not None:
                    logger.error("closing %s failed too: %s", type(output).__name__, error)
                failure = failure or error
        if failure is not None:
            raise failure


def open_sink(source_names: Sequence[str], *, record: str | os.PathLike | None = None, foxglove_port: int | None = None,
              foxglove_host: str = "127.0.0.1", options: MessageOptions = MessageOptions()) -> FrameSink:
    """A sink recording to ``record`` (MCAP) and/or serving Foxglove on ``foxglove_host:foxglove_port``."""
    if record is None and foxglove_port is None:
        raise RetinaEdgeError("a robotics sink needs an MCAP path to record to or a Foxglove port to serve on")
    if not source_names:
        raise RetinaEdgeError("a robotics sink needs at least one source")
    channels = channels_for(source_names)
    outputs = []
    try:
        if record is not None:
            from retina_edge.robotics.mcap_output import McapOutput

            outputs.append(McapOutput(record, channels))
        if foxglove_port is not None:
            from retina_edge.robotics.foxglove_output import FoxgloveOutput

            outputs.append(FoxgloveOutput(channels, host=foxglove_host, port=foxglove_port))
    except BaseException:
        FrameSink(source_names=source_names, outputs=outputs).close()
        raise
    return FrameSink(source_names=source_names, outputs=outputs, options=options)
