"""A live Foxglove view: a Foxglove WebSocket server (``foxglove-sdk``) publishing every source's channels.

The channels are those of the recording (``ros2msg`` schemas, CDR messages), so Foxglove shows the
live view and a recorded MCAP the same way. The server listens on 127.0.0.1 unless another host is
given; messages are encoded and sent only for channels a client subscribed to, and a slow client loses
its oldest queued messages (the SDK's per-client backlog) rather than slowing detection down.
"""

from __future__ import annotations

from collections.abc import Sequence

from retina_edge.optional import require
from retina_edge.robotics.channels import Channel, Message
from retina_edge.robotics.definitions import schema


class FoxgloveOutput:
    """Serve ``channels`` on ``host:port`` (port 0: any free port, see :attr:`port`)."""

    def __init__(self, channels: Sequence[Channel], *, host: str = "127.0.0.1", port: int = 8765,
                 backlog: int = 64) -> None:
        foxglove = require("foxglove", "the live Foxglove view")
        # A context of its own: channels and server apart from any other foxglove logging in the process.
        self._context = foxglove.Context()
        self._channels = {channel.topic: foxglove.Channel(
            channel.topic, schema=foxglove.Schema(name=channel.schema, encoding="ros2msg",
                                                  data=schema(channel.schema).encode()),
            message_encoding="cdr", context=self._context, metadata={"source": channel.source_name})
            for channel in channels}
        self._server = foxglove.start_server(name="retina-edge", host=host, port=port, context=self._context,
                                             message_backlog_size=backlog)
        self.host = host
        self._closed = False

    @property
    def port(self) -> int:
        return self._server.port

    def wants(self, topic: str) -> bool:
        """Whether a client subscribed to ``topic`` (the SDK sends nothing otherwise)."""
        return topic in self._channels and self._channels[topic].has_sinks()

    def write(self, frame: Sequence[Message]) -> None:
        for message in frame:
            if self.wants(message.topic):
                self._channels[message.topic].log(message.data, log_time=message.log_time)

    def close(self) -> None:
        """Stop the server and close the channels (once; later calls do nothing)."""
        if self._closed:
            return
        self._closed = True
        self._server.stop()
        for channel in self._channels.values():
            channel.close()
