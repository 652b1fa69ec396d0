"""An MCAP recording (``ros2`` profile: ``ros2msg`` schemas, CDR messages) of every source's channels.

Written to a temporary file beside the target and moved onto it by :meth:`McapOutput.close`,
which finishes the file (summary, indexes) whatever ended the run, an error or SIGINT included:
the recording then holds every frame written so far and any MCAP reader opens it. A process
killed outright (SIGKILL, power loss) leaves the temporary ``.NAME.*.tmp``, whose complete chunks
``mcap recover`` restores.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence

from retina_edge._version import __version__
from retina_edge.atomic import StagedFile
from retina_edge.optional import require
from retina_edge.robotics.channels import Channel, Message
from retina_edge.robotics.definitions import schema


class McapOutput:
    """Record ``channels`` into ``path`` (see the module docstring); ``write`` takes a frame's messages."""

    def __init__(self, path: str | os.PathLike, channels: Sequence[Channel]) -> None:
        writer_module = require("mcap.writer", "MCAP recording")
        self.path = path
        self._staged = StagedFile(path)
        self._stream = None
        try:
            self._stream = open(self._staged.path, "wb")  # noqa: SIM115 - closed by close()
            # Chunks stay uncompressed: JPEG frames make up the bulk and do not compress further.
            self._writer = writer_module.Writer(self._stream, compression=writer_module.CompressionType.NONE)
            self._channel_ids = self._start(channels)
        except BaseException:  # an unknown schema, no descriptor left: no temporary file left behind
            if self._stream is not None:
                with contextlib.suppress(OSError):  # a buffer that cannot be written (a full disk)
                    self._stream.close()
            self._staged.discard()
            raise
        self._sequence = 0
        self._closed = False

    def _start(self, channels: Sequence[Channel]) -> dict[str, int]:
        """Write the header, the schemas, the channels and the sources; returns each topic's channel id."""
        self._writer.start(profile="ros2", library=f"retina-edge {__version__}")
        schema_ids = {name: self._writer.register_schema(name, "ros2msg", schema(name).encode())
                      for name in dict.fromkeys(channel.schema for channel in channels)}
        channel_ids = {channel.topic: self._writer.register_channel(
            channel.topic, "cdr", schema_ids[channel.schema], {"source": channel.source_name}) for channel in channels}
        self._writer.add_metadata("retina_edge", {"sources": json.dumps(
            list(dict.fromkeys(channel.source_name for channel in channels)))})
        return channel_ids

    def wants(self, topic: str) -> bool:
        return topic in self._channel_ids

    def write(self, frame: Sequence[Message]) -> None:
        try:
            for message in frame:
                self._sequence += 1
                self._writer.add_message(self._channel_ids[message.topic], message.log_time, message.data,
                                         message.log_time, self._sequence)
        except OSError as error:  # a full disk: name the recording, not the temporary file
            raise OSError(error.errno, error.strerror or str(error), str(self.path)) from None

    def close(self) -> None:
        """Finish the file and move it onto ``path`` (once; later calls do nothing). If it cannot be
        finished (a full disk), the temporary file goes and nothing replaces ``path``."""
        if self._closed:
            return
        self._closed = True
        try:
            self._writer.finish()
            self._stream.close()
        except BaseException as error:
            with contextlib.suppress(OSError):  # its buffer cannot be written either; the descriptor closes
                self._stream.close()
            self._staged.discard()
            if isinstance(error, OSError):
                raise OSError(error.errno, error.strerror or str(error), str(self.path)) from None
            raise
        self._staged.commit()
