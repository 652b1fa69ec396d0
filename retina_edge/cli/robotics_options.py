"""``--record OUT.mcap`` and ``--foxglove [PORT]``: the robotics outputs of a command that runs sources.

A command adds the options with :func:`add_arguments` and, once it knows its sources, opens the
sinks with :func:`open_sinks`; each sink takes every ``FrameResult`` (``write``) and is closed when
the run ends, however it ends (``close``, or a ``with`` block).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

logger = logging.getLogger(__name__)

DEFAULT_FOXGLOVE_PORT = 8765


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number in [0, 65535] (0: any free port), got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("robotics outputs (MCAP, Foxglove)")
    group.add_argument("--record", metavar="OUT.mcap",
                       help="record every source's frames (sensor_msgs/CompressedImage), detections "
                            "(vision_msgs/Detection2DArray) and box overlays (foxglove_msgs/ImageAnnotations) to an "
                            "MCAP file (ROS 2 schemas, CDR), finished on Ctrl-C and on errors")
    group.add_argument("--foxglove", nargs="?", const=DEFAULT_FOXGLOVE_PORT, type=_port, metavar="PORT",
                       help=f"serve the same channels live to Foxglove (WebSocket, default port {DEFAULT_FOXGLOVE_PORT})")
    group.add_argument("--foxglove-host", default="127.0.0.1",
                       help="address the Foxglove server listens on (default 127.0.0.1; 0.0.0.0 opens it to the network)")


def check(args: argparse.Namespace) -> None:
    """Before any work: the live view can listen where asked (the host is this machine's, the port
    free), and a host open to the network is warned about, as ``serve`` warns. (The packages the
    outputs need are checked before that, with every command's: ``OPTION_PACKAGES``, cli/packages.py.)"""
    if args.foxglove is None:
        return
    from retina_edge.robotics.foxglove_output import check_address
    from retina_edge.triton.server import is_loopback

    check_address(args.foxglove_host, args.foxglove)
    if not is_loopback(args.foxglove_host):
        logger.warning("the Foxglove live view listens on %s: anyone who reaches this machine can watch every "
                       "source (no authentication)", args.foxglove_host)


def open_sinks(args: argparse.Namespace, source_names: Sequence[str]) -> list:
    """The sinks the options ask for (none, or one writing to the recording and/or the live server);
    says where the live view listens (the port the system gave, for port 0)."""
    if args.record is None and args.foxglove is None:
        return []
    from retina_edge.robotics.foxglove_output import FoxgloveOutput, address
    from retina_edge.robotics.sinks import open_sink

    sink = open_sink(source_names, record=args.record, foxglove_port=args.foxglove, foxglove_host=args.foxglove_host)
    for output in sink.outputs:
        if isinstance(output, FoxgloveOutput):
            print(f"Foxglove live view: ws://{address(output.host, output.port)}", flush=True)
    return [sink]
