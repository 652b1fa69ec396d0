"""The robotics sinks fed by a real Detector over two synthetic sources: the MCAP recording read back
by the ``mcap`` reader and mcap-ros2-support's decoder (not our code), finished on SIGINT and on
errors; the live Foxglove server read by a WebSocket client speaking the Foxglove protocol."""

from __future__ import annotations

import argparse
import json
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from robotics_helpers import detector_results, export_synth_model, plain
from test_robotics_messages import check_annotations, check_detection_array

from retina_edge.cli import robotics_options
from retina_edge.imageio import decode_image_bytes
from retina_edge.robotics.messages import header, stamp, stamp_ns

FRAMES = 6
TOPICS = ("image/compressed", "detections", "annotations")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return export_synth_model(tmp_path_factory.mktemp("robotics"))


@pytest.fixture(scope="module")
def results(model):
    return detector_results(model, FRAMES, sources=2, track=True)


def options(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    robotics_options.add_arguments(parser)
    return parser.parse_args(list(argv))


def read_mcap(path: Path):
    """{topic: [(log_time, decoded message)]} and the summary, through mcap + mcap_ros2 only."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    found = defaultdict(list)
    with open(path, "rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            assert (schema.encoding, channel.message_encoding) == ("ros2msg", "cdr")
            found[channel.topic].append((message.log_time, plain(decoded)))
        assert reader.get_header().profile == "ros2"
    return found, summary


def test_cli_options():
    assert options().record is None and options().foxglove is None
    assert options("--foxglove").foxglove == 8765 and options("--foxglove", "0").foxglove == 0
    assert options("--foxglove", "9000").foxglove_host == "127.0.0.1"
    assert robotics_options.open_sinks(options(), ["a"]) == []
    with pytest.raises(SystemExit):
        options("--foxglove", "70000")


def test_two_source_recording_reads_back_with_the_mcap_reader_and_mcap_ros2(results, tmp_path):
    out = tmp_path / "run.mcap"
    [sink] = robotics_options.open_sinks(options("--record", str(out)), ["synthetic://0", "synthetic://1"])
    with sink:
        for result in results:
            sink.write(result)
    found, summary = read_mcap(out)
    assert {f"/camera_{s}/{t}" for s in (0, 1) for t in TOPICS} == set(found)
    assert all(len(messages) == FRAMES for messages in found.values())
    assert summary.statistics.message_count == len(results) * 3
    assert {c.metadata["source"] for c in summary.channels.values()} == {"synthetic://0", "synthetic://1"}
    for result in results:
        prefix, time_ = f"/camera_{result.source}/", stamp(result.timestamp)
        image_header = header(time_, f"camera_{result.source}")
        (log_time, image), = [m for m in found[prefix + "image/compressed"] if m[1]["header"] == image_header]
        assert log_time == stamp_ns(time_) and image["format"] == "jpeg"
        recorded = decode_image_bytes(image["data"])
        assert recorded.shape == result.image.shape
        assert np.abs(recorded.astype(int) - result.image).mean() < 4  # JPEG at quality 85
        (_, detections), = [m for m in found[prefix + "detections"] if m[1]["header"] == image_header]
        assert len(result.detections) > 0
        check_detection_array(detections, result.detections, image_header, result.track_ids, "name")
        (_, annotations), = [m for m in found[prefix + "annotations"] if m[0] == stamp_ns(time_)]
        check_annotations(annotations, result.detections, time_)


def run_child(model: Path, out: Path, mode: str) -> tuple[int, int]:
    """(frames the child reported written, its exit code); SIGINT once it wrote 3 (mode ``sigint``)."""
    child = subprocess.Popen([sys.executable, str(Path(__file__).parent / "robotics_record_child.py"), str(model), mode,
                              "--record", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    written = 0
    try:
        for line in child.stdout:
            written = int(line.split()[1])
            if mode == "sigint" and written == 3:
                child.send_signal(signal.SIGINT)
        return written, child.wait(timeout=120)
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("mode", ["sigint", "error"])
def test_recording_is_finished_on_sigint_and_on_errors(model, tmp_path, mode):
    out = tmp_path / "stopped.mcap"
    written, code = run_child(model, out, mode)
    assert (code == 0) if mode == "sigint" else (code != 0 and written == 3)
    found, summary = read_mcap(out)  # a finished file: summary and indexes present
    assert summary is not None and summary.statistics.message_count == written * 6
    assert {topic: len(messages) for topic, messages in found.items()} == {
        f"/camera_{s}/{t}": written for s in (0, 1) for t in TOPICS}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stopped.mcap"]  # no temporary left


class FoxgloveClient(threading.Thread):
    """Subscribes to every advertised channel (Foxglove WebSocket protocol) and decodes each binary
    message with mcap-ros2-support from the schema the server advertised, until ``count`` per channel."""

    def __init__(self, port: int, count: int) -> None:
        super().__init__(daemon=True)
        self.port, self.count = port, count
        self.channels: dict[int, dict] = {}
        self.decoded: dict[str, list] = defaultdict(list)
        self.subprotocol = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error

    def _done(self) -> bool:
        return len(self.channels) > 0 and all(len(self.decoded[c["topic"]]) >= self.count for c in self.channels.values())

    def _run(self) -> None:
        from mcap_ros2._dynamic import generate_dynamic
        from websockets.sync.client import connect

        decoders = {}
        with connect(f"ws://127.0.0.1:{self.port}", subprotocols=["foxglove.sdk.v1", "foxglove.websocket.v1"],
                     open_timeout=10) as socket:
            self.subprotocol = socket.subprotocol
            deadline = time.monotonic() + 60
            while not self._done() and time.monotonic() < deadline:
                frame = socket.recv(timeout=10)
                if isinstance(frame, str):
                    message = json.loads(frame)
                    if message["op"] == "advertise":
                        subscriptions = []
                        for channel in message["channels"]:
                            self.channels[channel["id"]] = channel
                            decoders[channel["id"]] = generate_dynamic(channel["schemaName"],
                                                                       channel["schema"])[channel["schemaName"]]
                            subscriptions.append({"id": channel["id"], "channelId": channel["id"]})
                        socket.send(json.dumps({"op": "subscribe", "subscriptions": subscriptions}))
                elif frame[0] == 0x01:  # message data: opcode, subscription id, log time (ns), payload
                    subscription, log_time = struct.unpack_from("<IQ", frame, 1)
                    channel = self.channels[subscription]
                    self.decoded[channel["topic"]].append((log_time, plain(decoders[subscription](frame[13:]))))


def test_live_foxglove_server_serves_every_channel_to_a_websocket_client(results):
    [sink] = robotics_options.open_sinks(options("--foxglove", "0"), ["synthetic://0", "synthetic://1"])
    with sink:
        [server] = sink.outputs
        client = FoxgloveClient(server.port, count=3)
        client.start()
        # Frames keep coming, as in a live run; messages logged before the client subscribed are not sent.
        deadline = time.monotonic() + 60
        while client.is_alive() and time.monotonic() < deadline:
            for result in results:
                sink.write(result)
            time.sleep(0.05)
        client.join(timeout=10)
    assert client.error is None, client.error
    assert client.subprotocol in ("foxglove.sdk.v1", "foxglove.websocket.v1")
    schemas = {c["topic"]: (c["schemaName"], c["encoding"], c["schemaEncoding"]) for c in client.channels.values()}
    assert schemas["/camera_1/detections"] == ("vision_msgs/msg/Detection2DArray", "cdr", "ros2msg")
    assert schemas["/camera_0/annotations"] == ("foxglove_msgs/msg/ImageAnnotations", "cdr", "ros2msg")
    assert Counter({topic: min(len(m), 3) for topic, m in client.decoded.items()}) == Counter(
        {f"/camera_{s}/{t}": 3 for s in (0, 1) for t in TOPICS})
    by_stamp = {(r.source, stamp_ns(stamp(r.timestamp))): r for r in results}
    for source in (0, 1):
        for log_time, detections in client.decoded[f"/camera_{source}/detections"]:
            result = by_stamp[(source, log_time)]
            check_detection_array(detections, result.detections, header(stamp(result.timestamp), f"camera_{source}"),
                                  result.track_ids, "name")


def test_a_live_view_nobody_watches_encodes_nothing(results, monkeypatch, tmp_path):
    """Frames are JPEG-encoded only for an output that takes them: a recording, or a subscribed client."""
    from retina_edge.robotics import channels

    encoded = []
    monkeypatch.setattr(channels, "encode_image_rgb", lambda image, *a, **k: encoded.append(1) or b"\xff\xd8")
    [live] = robotics_options.open_sinks(options("--foxglove", "0"), ["s0", "s1"])
    with live:
        for result in results:
            live.write(result)
    assert encoded == [] and live.frames == [FRAMES, FRAMES]
    [both] = robotics_options.open_sinks(options("--foxglove", "0", "--record", str(tmp_path / "r.mcap")), ["s0", "s1"])
    with both:
        both.write(results[0])
    assert encoded == [1]
