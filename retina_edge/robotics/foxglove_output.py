"""A live Foxglove view: a Foxglove WebSocket server (``foxglove-sdk``) publishing every source's channels.

The channels are those of the recording (``ros2msg`` schemas, CDR messages), so Foxglove shows the
live view and a recorded MCAP the same way. The server listens on 127.0.0.1 unless another host is
given; messages are encoded and sent only for channels a client subscribed to, and a slow client loses
its oldest queued messages (the SDK's per-client backlog) rather than slowing detection down.
"""

from __future__ import annotations

from collections.abc import Sequence

from retina_edge.errors import RetinaEdgeError
from retina_edge.optional import require
from retina_edge.robotics.channels import Channel, Message
from retina_edge.robotics.definitions import schema


def address(host: str, port: int) -> str:
    """``host:port``, an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_address(host: str, port: int) -> None:
    """Raise unless a server can listen on ``host:port`` now (``host`` names an address of this
    machine, the port is free): before a run loads its model, not after."""
    import socket

    try:
        family, kind, protocol, _, bound = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine, as for the server
            probe.bind(bound)
    except (OSError, UnicodeError) as error:  # socket.gaierror is an OSError
        raise RetinaEdgeError(f"the Foxglove live view cannot listen on {address(host, port)}: "
                              f"{getattr(error, 'strerror', None) or error}") from None


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
        try:
            self._server = foxglove.start_server(name="retina-edge", host=host, port=port, context=self._context,
                                                 message_backlog_size=backlog)
        except RuntimeError as error:  # the SDK's FoxgloveError: a port taken, an address not of this machine
            for channel in self._channels.values():
                channel.close()
            raise RetinaEdgeError(f"the Foxglove live view cannot listen on {address(host, port)}: "
                                  f"{str(error).split('Failed to bind port: ')[-1]}") from None
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
