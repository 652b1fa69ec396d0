"""Cost per frame of the robotics outputs: MCAP recording and the live Foxglove server, beside inference.

    python bench/robotics_bench.py --model synth.onnx --frames 60 --rounds 5 --width 640 --height 480

Frames of two synthetic sources are detected once (the Detector's time per image is the
reference); then the same FrameResults are written, round after round with the variants
interleaved so machine noise hits them alike, through:

- ``jpeg``: the frame's JPEG alone (quality 85), the bulk of every variant below;
- ``encode``: the messages alone (JPEG of the frame, CDR of detections and annotations), no output;
- ``record``: the MCAP sink (``--record``), file finished after each round;
- ``live, no client``: the Foxglove sink (``--foxglove``) with nobody connected;
- ``live, 1 client``: the same with a WebSocket client subscribed to every channel, reading all;
- ``record + live``: both outputs on one sink (messages encoded once).

Printed: median over rounds of ms per frame, and each as a fraction of the inference time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path


def cpu_line() -> str:
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("Flags")), [])
    present = [flag for flag in ("avx2", "avx512_vnni", "amx_int8") if flag in flags]
    return f"{model} ({', '.join(present) or 'no avx2'})"


def frame_results(model: str, frames: int, width: int, height: int):  # noqa: ANN201
    """Two sources' FrameResults from a real Detector, and its median ms per image."""
    from retina_edge.data.synth_video import SyntheticVideo
    from retina_edge.runtime import Detector
    from retina_edge.runtime.video import FrameResult

    videos = [SyntheticVideo(seed=seed, width=width, height=height, objects=6) for seed in (1, 2)]
    results, times = [], []
    with Detector(model, backend="onnxruntime") as detector:
        for index in range(frames):
            images = [video.frame(index) for video in videos]
            start = time.perf_counter()
            found = detector.detect(images)
            times.append((time.perf_counter() - start) / len(images))
            results += [FrameResult(index, time.time(), image, dets, 0.0, 0.0, source, f"synthetic://{source}")
                        for source, (image, dets) in enumerate(zip(images, found))]
    return results, 1e3 * statistics.median(times)


class Subscriber(threading.Thread):
    """A Foxglove WebSocket client subscribed to every channel, reading until closed."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.received, self.subscribed = port, 0, threading.Event()

    def run(self) -> None:
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        with connect(f"ws://127.0.0.1:{self.port}", subprotocols=["foxglove.sdk.v1", "foxglove.websocket.v1"]) as socket:
            try:
                while True:
                    frame = socket.recv()
                    if isinstance(frame, str):
                        message = json.loads(frame)
                        if message["op"] == "advertise":
                            socket.send(json.dumps({"op": "subscribe", "subscriptions": [
                                {"id": c["id"], "channelId": c["id"]} for c in message["channels"]]}))
                            time.sleep(0.2)
                            self.subscribed.set()
                    else:
                        self.received += 1
            except ConnectionClosed:
                return


def time_variant(name: str, results, folder: Path) -> float:  # noqa: ANN001
    """ms per frame writing ``results`` through variant ``name``."""
    from retina_edge.robotics.channels import frame_messages
    from retina_edge.robotics.sinks import open_sink

    sources = ["synthetic://0", "synthetic://1"]
    if name in ("jpeg", "encode"):
        from retina_edge.imageio import encode_image_rgb

        start = time.perf_counter()
        for result in results:
            encode_image_rgb(result.image, ".jpg", quality=85) if name == "jpeg" else frame_messages(result)
        return 1e3 * (time.perf_counter() - start) / len(results)
    record = folder / "bench.mcap" if "record" in name else None
    port = 0 if "live" in name else None
    with open_sink(sources, record=record, foxglove_port=port) as sink:
        if name == "live, 1 client":
            client = Subscriber(sink.outputs[0].port)
            client.start()
            client.subscribed.wait(10)
        start = time.perf_counter()
        for result in results:
            sink.write(result)
        elapsed = time.perf_counter() - start
        if "record" in name:  # finishing the file belongs to recording's cost
            start = time.perf_counter()
            sink.close()
            elapsed += time.perf_counter() - start
    return 1e3 * elapsed / len(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="an ONNX model (retina-edge export --weights preset:synth -o m.onnx)")
    parser.add_argument("--frames", type=int, default=60, help="frames per source")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args()
    results, inference_ms = frame_results(args.model, args.frames, args.width, args.height)
    variants = ["jpeg", "encode", "record", "live, no client", "live, 1 client", "record + live"]
    times = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):
            for name in variants:
                times[name].append(time_variant(name, results, Path(folder)))
    print(f"CPU: {cpu_line()}; {len(results)} frames ({args.width}x{args.height}, 2 sources), {args.rounds} rounds")
    print(f"{'inference (ORT, per image)':28s} {inference_ms:7.2f} ms")
    for name in variants:
        median = statistics.median(times[name])
        print(f"{name:28s} {median:7.2f} ms/frame  ({median / inference_ms:5.1%} of inference)")


if __name__ == "__main__":
    main()
