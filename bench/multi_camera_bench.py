"""Several cameras, one model: throughput, live latency and faults (tracking: bench/tracking_bench.py).

    python bench/multi_camera_bench.py --model m-b4.onnx throughput --frames 60
    python bench/multi_camera_bench.py --model m-b4.onnx live --seconds 60 --fps 15

``m-b4.onnx``: a graph with a batch range up to 4 (``retina-edge export --weights preset:synth
--batch 1 4 4 -o m-b4.onnx``).

1. throughput: 4 synthetic videos (a) through one pipeline (frames of the 4 batched into one
   detector call), (b) one after another in one process, (c) in 4 processes at once; frames per
   second over the wall time and peak resident memory (the sum of the 4 processes' peaks for c).
   Each mode runs in its own process, one after the other.
2. live: 4 MJPEG-over-HTTP cameras on 127.0.0.1 at ``--fps`` each (started here), one pipeline;
   per camera: capture-to-result latency p50/p99, frames dropped, delivered fps; resident memory
   every 10 s. Camera 3 is stopped at 1/3 of the run and restarted 5 s later: its reconnects and
   the others' delivered rate during the outage are reported.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_videos(folder: Path, count: int, frames: int, first_seed: int = 10) -> list[str]:
    from retina_edge.data.synth_video import SyntheticVideo, write_video

    return [str(write_video(folder / f"cam{i}.mp4", SyntheticVideo(seed=first_seed + i), frames)) for i in range(count)]


def worker(args: argparse.Namespace) -> None:
    """One throughput mode in this process; prints its frames, seconds and peak memory as JSON."""
    from retina_edge.runtime import BackendOptions, Detector
    from retina_edge.runtime.video import Pipeline

    with Detector(args.model, options=BackendOptions(streams=1)) as detector, Pipeline(detector) as pipeline:
        start, frames = time.perf_counter(), 0
        runs = [args.videos] if args.mode == "batched" else [[video] for video in args.videos]
        for videos in runs:
            frames += sum(1 for _ in pipeline.run(videos if len(videos) > 1 else videos[0]))
        print(json.dumps({"frames": frames, "seconds": time.perf_counter() - start, "rss_mb": peak_rss_mb()}))


def spawn(model: str, mode: str, videos: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--model", model, "_worker", "--mode", mode, *videos],
                            stdout=subprocess.PIPE, text=True)


def batch_cost(model: str, rounds: int = 5) -> None:
    """Inference alone: ms per frame with 4 frames as one batch against 4 calls of one frame,
    interleaved over ``rounds`` so machine noise hits both alike; medians."""
    from retina_edge.data.synth_video import SyntheticVideo
    from retina_edge.runtime import BackendOptions, Detector

    frames = [SyntheticVideo(seed=seed).frame(0) for seed in range(4)]
    timings: dict[str, list[float]] = {"batch 4": [], "4 x batch 1": []}
    with Detector(model, options=BackendOptions(streams=1)) as detector:
        detector.detect(frames)
        for _ in range(rounds):
            start = time.perf_counter()
            detector.detect(frames)
            timings["batch 4"].append((time.perf_counter() - start) / 4)
            start = time.perf_counter()
            for frame in frames:
                detector.detect([frame])
            timings["4 x batch 1"].append((time.perf_counter() - start) / 4)
    print("inference alone, ms per frame (median of %d interleaved rounds): " % rounds
          + ", ".join(f"{name} {1e3 * np.median(values):.1f}" for name, values in timings.items()))


def throughput(args: argparse.Namespace) -> None:
    batch_cost(args.model)
    with tempfile.TemporaryDirectory() as folder:
        videos = make_videos(Path(folder), 4, args.frames)
        rows = {}
        for mode in ("batched", "sequential"):
            rows[mode] = json.loads(spawn(args.model, mode, videos).communicate()[0])
        start = time.perf_counter()
        procs = [spawn(args.model, "sequential", [video]) for video in videos]
        parts = [json.loads(proc.communicate()[0]) for proc in procs]
        rows["4 processes"] = {"frames": sum(p["frames"] for p in parts), "seconds": time.perf_counter() - start,
                               "rss_mb": sum(p["rss_mb"] for p in parts)}
    print(f"{'mode':<26}{'frames':>8}{'FPS':>8}{'peak RSS MB':>13}")
    for mode, row in rows.items():
        label = {"batched": "one pipeline, batched", "sequential": "one after another"}.get(mode, mode)
        print(f"{label:<26}{row['frames']:>8}{row['frames'] / row['seconds']:>8.2f}{row['rss_mb']:>13.0f}")


class PacedMjpegServer:
    """A camera on 127.0.0.1: JPEG frames at ``fps`` (absolute schedule) over multipart HTTP."""

    def __init__(self, seed: int, fps: float) -> None:
        import cv2

        from retina_edge.data.synth_video import SyntheticVideo

        video = SyntheticVideo(seed=seed)
        self.jpegs = [cv2.imencode(".jpg", video.frame(i)[:, :, ::-1])[1].tobytes() for i in range(60)]
        self.fps, self.port, self.server, self.stopping = fps, 0, None, threading.Event()

    def start(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        jpegs, fps, stopping = self.jpegs, self.fps, self.stopping
        stopping.clear()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                start, index = time.perf_counter(), 0
                try:
                    while not stopping.is_set():
                        data = jpegs[index % len(jpegs)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(data)).encode() + b"\r\n\r\n" + data + b"\r\n")
                        index += 1
                        time.sleep(max(0.0, start + index / fps - time.perf_counter()))
                except OSError:
                    return

            def log_message(self, *args) -> None:  # noqa: ANN002
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        ThreadingHTTPServer.daemon_threads = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def live(args: argparse.Namespace) -> None:
    import os

    from retina_edge.quality.bench import process_rss_mb
    from retina_edge.runtime import BackendOptions, Detector
    from retina_edge.runtime.video import Pipeline, PipelineConfig
    from retina_edge.runtime.video.sources import ReconnectPolicy

    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rw_timeout;2000000")
    cameras = [PacedMjpegServer(20 + i, args.fps) for i in range(4)]
    for camera in cameras:
        camera.start()
    urls = [f"http://127.0.0.1:{camera.port}/cam{i}.mjpg" for i, camera in enumerate(cameras)]
    config = PipelineConfig(reconnect=ReconnectPolicy(attempts=30, initial_delay=0.5, max_delay=1.0))
    outage = (args.seconds / 3, args.seconds / 3 + 5)
    memory, during = [], np.zeros(4)
    with Detector(args.model, options=BackendOptions(streams=1)) as detector, Pipeline(detector, config) as pipeline:
        start = time.perf_counter()
        threading.Timer(outage[0], cameras[3].stop).start()
        threading.Timer(outage[1], cameras[3].start).start()
        for result in pipeline.run(urls, log=lambda m: print(f"  [{time.perf_counter() - start:5.1f} s] {m}")):
            elapsed = time.perf_counter() - start
            if outage[0] <= elapsed < outage[1]:
                during[result.source] += 1
            if elapsed >= 10 * (len(memory) + 1):
                memory.append(round(process_rss_mb()))
            if elapsed >= args.seconds:
                pipeline.stop()
    for camera in cameras:
        camera.stop()
    report_live(pipeline, during / (outage[1] - outage[0]), memory)


def report_live(pipeline, outage_fps: np.ndarray, memory: list[int]) -> None:  # noqa: ANN001
    print(f"{'camera':<8}{'frames':>8}{'dropped':>9}{'fps':>7}{'p50 ms':>9}{'p99 ms':>9}{'reconnects':>12}"
          f"{'fps in outage':>15}")
    for index, stats in enumerate(pipeline.source_stats):
        row = stats.summary()
        print(f"{index:<8}{row['frames']:>8}{row['dropped']:>9}{row['fps']:>7.2f}{row['latency_p50_ms']:>9}"
              f"{row['latency_p99_ms']:>9}{row['reconnects']:>12}{outage_fps[index]:>15.2f}")
    print(f"resident memory every 10 s (MB): {memory}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    commands = parser.add_subparsers(dest="command", required=True)
    part = commands.add_parser("throughput")
    part.add_argument("--frames", type=int, default=60)
    part = commands.add_parser("live")
    part.add_argument("--seconds", type=float, default=60.0)
    part.add_argument("--fps", type=float, default=15.0)
    part = commands.add_parser("_worker")
    part.add_argument("--mode", choices=["batched", "sequential"], required=True)
    part.add_argument("videos", nargs="+")
    args = parser.parse_args()
    {"throughput": throughput, "live": live, "_worker": worker}[args.command](args)


if __name__ == "__main__":
    main()
