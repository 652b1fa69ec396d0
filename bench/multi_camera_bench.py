"""Several cameras, one model: throughput, live latency and faults, tracking quality and cost.

    python bench/multi_camera_bench.py --model m-b4.onnx throughput --frames 60
    python bench/multi_camera_bench.py --model m-b4.onnx live --seconds 60 --fps 15
    python bench/multi_camera_bench.py --model m-b4.onnx tracking --frames 150

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
3. tracking: ``--videos`` synthetic videos with ground truth (MOTChallenge, seeds from ``--seed``),
   the model's detections given identities three ways (``detect --track``'s default, ByteTrack with
   colour checks; ByteTrack alone; the true identities, the detector's ceiling), scored with
   ``motmetrics`` (IDF1, MOTA, identity switches, each with a 95% interval from resampling the
   videos), over all objects and over those at least ``--min-visibility`` visible (objects drawn
   later cover earlier ones); then the tracker alone on 50 objects: ms per frame.
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


def tracking(args: argparse.Namespace) -> None:
    """Detections once, three identity assignments on them: ``detect --track``'s default (ByteTrack
    with colour checks), ByteTrack alone, and the ceiling (every detection given its object's true
    identity, so only the detector's misses and false boxes count)."""
    import motmetrics as mm

    from retina_edge.data.synth_video import SyntheticVideo
    from retina_edge.runtime import BackendOptions, Detector
    from retina_edge.runtime.video import Pipeline
    from retina_edge.runtime.video.tracking import TrackerOptions, make_tracker

    default, motion_only = TrackerOptions(), TrackerOptions(reid_similarity=None)
    seeds = list(range(args.seed, args.seed + args.videos))
    variants: dict[str, list[list[str]]] = {"ByteTrack + colour checks (default)": [], "ByteTrack alone": [],
                                            "true identities (the detector's ceiling)": []}
    with tempfile.TemporaryDirectory() as folder, Detector(args.model, options=BackendOptions(streams=1)) as detector:
        videos = make_videos(Path(folder), args.videos, args.frames, first_seed=args.seed)
        trackers = [(make_tracker(default), make_tracker(motion_only)) for _ in seeds]
        scenes = [SyntheticVideo(seed=seed) for seed in seeds]
        for lines in variants.values():
            lines.extend([] for _ in seeds)
        with Pipeline(detector) as pipeline:
            for result in pipeline.run(videos):
                found = identities(result, trackers[result.source], scenes[result.source], default.min_score)
                for lines, ids in zip(variants.values(), found):
                    lines[result.source].append(mot_lines(result.index, result.detections, ids))
        truths = ground_truths(mm, Path(folder), scenes, args.frames)
        for visible in (0.0, args.min_visibility):
            print(f"{args.videos} videos x {args.frames} frames (seeds {seeds[0]}..{seeds[-1]}), objects at least "
                  f"{visible:.0%} visible; 95% intervals from 2000 bootstrap resamples of the videos:")
            counts = {name: video_counts(mm, Path(folder), truths, lines, visible) for name, lines in variants.items()}
            report_tracking(counts)
    tracker_cost(args.objects)


def identities(result, trackers, scene, min_score: float) -> list[np.ndarray]:  # noqa: ANN001
    """Track IDs of ``result``'s detections by the default tracker, ByteTrack alone, and the truth
    (``scene``: the SyntheticVideo the result's source was made from)."""
    with_reid, alone = trackers
    truth = np.full(len(result.detections), -1, dtype=np.int64)
    objects = scene.boxes(result.index)
    kept = np.flatnonzero(np.asarray(result.detections.scores) >= min_score)
    if len(kept) and objects:
        boxes = np.asarray(result.detections.boxes, dtype=np.float64)[kept]
        iou = iou_matrix(np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1),
                         np.array([box for _, _, box in objects], dtype=np.float64))
        # one detection per object (motmetrics' identity counts assume an ID once per frame), the
        # best-overlapping first; the others are false boxes with IDs of their own
        truth[kept] = 1000 + np.arange(len(kept))
        for row, column in sorted(zip(*np.nonzero(iou >= 0.5)), key=lambda rc: -iou[rc]):
            if truth[kept[row]] >= 1000 and column not in truth[kept]:
                truth[kept[row]] = column
    return [with_reid.update(result.detections, None, result.image), alone.update(result.detections), truth]


def ground_truths(mm, folder: Path, scenes: list, frames: int) -> list:  # noqa: ANN001
    from retina_edge.data.synth_video import write_mot_ground_truth

    return [mm.io.loadtxt(str(write_mot_ground_truth(folder / f"gt{number}.txt", scene, frames)), fmt="mot15-2D")
            for number, scene in enumerate(scenes)]


COUNTS = ["idtp", "idfp", "idfn", "num_misses", "num_false_positives", "num_switches", "num_objects"]


def video_counts(mm, folder: Path, truths: list, lines: list[list[str]], visible: float) -> np.ndarray:  # noqa: ANN001
    """``(videos, len(COUNTS))``: per video, the counts IDF1 and MOTA are made of."""
    rows = []
    for number, (truth, found) in enumerate(zip(truths, lines)):
        hyp = folder / f"hyp{number}.txt"
        hyp.write_text("".join(found))
        summary = mm.metrics.create().compute(accumulate(mm, truth, mm.io.loadtxt(str(hyp), fmt="mot15-2D"), visible),
                                              metrics=COUNTS)
        rows.append([float(summary[name].iloc[0]) for name in COUNTS])
    return np.array(rows)


def idf1_mota(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IDF1 and MOTA of the summed counts (last axis: COUNTS), over any leading axes."""
    idtp, idfp, idfn, misses, false, switches, objects = np.moveaxis(counts, -1, 0)
    return 2 * idtp / (2 * idtp + idfp + idfn), 1 - (misses + false + switches) / objects


def report_tracking(counts: dict[str, np.ndarray], resamples: int = 2000) -> None:
    """Each variant's IDF1 and MOTA with their intervals, and the default's gain over ByteTrack alone
    (paired: the same resampled videos for both)."""
    videos = len(next(iter(counts.values())))
    picks = np.random.default_rng(0).integers(0, videos, (resamples, videos))
    samples = {name: idf1_mota(c[picks].sum(axis=1)) for name, c in counts.items()}
    for name, c in counts.items():
        idf1, mota = idf1_mota(c.sum(axis=0))
        (idf1_lo, idf1_hi), (mota_lo, mota_hi) = (np.percentile(v, [2.5, 97.5]) for v in samples[name])
        print(f"  {name:<42} IDF1 {idf1:.3f} [{idf1_lo:.3f}, {idf1_hi:.3f}]  MOTA {mota:.3f} [{mota_lo:.3f}, "
              f"{mota_hi:.3f}]  ID switches {int(c[:, COUNTS.index('num_switches')].sum())}")
    default, alone = list(counts)[:2]
    gain = samples[default][0] - samples[alone][0]
    point = idf1_mota(counts[default].sum(axis=0))[0] - idf1_mota(counts[alone].sum(axis=0))[0]
    low, high = np.percentile(gain, [2.5, 97.5])
    print(f"  colour checks' IDF1 gain: {point:+.3f} [{low:+.3f}, {high:+.3f}]"
          f"{'' if low > 0 or high < 0 else ' (unresolved on these videos)'}")


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``(N, 4)`` and ``(M, 4)`` xywh boxes."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    return inter / (a[:, None, 2] * a[:, None, 3] + b[None, :, 2] * b[None, :, 3] - inter)


def accumulate(mm, truth, found, min_visibility: float = 0.0):  # noqa: ANN001, ANN201
    """motmetrics' compare_to_groundtruth with IoU >= 0.5 matching; its own IoU helper calls
    ``np.asfarray``, which NumPy 2 removed (motmetrics 1.4.0), so the distances are computed here.
    Objects less visible than ``min_visibility`` are ignored, with the boxes found on them (as
    MOTChallenge does for its distractors): neither a miss nor a false positive."""
    accumulator = mm.MOTAccumulator(auto_id=False)
    for frame in sorted(truth.index.get_level_values(0).unique()):
        gt = truth.loc[frame]
        hyp = found.loc[frame] if frame in found.index.get_level_values(0) else found.iloc[:0]
        ignored = gt[gt["Visibility"] < min_visibility]
        gt = gt[gt["Visibility"] >= min_visibility]
        box = ["X", "Y", "Width", "Height"]
        if len(ignored) and len(hyp):
            hyp = hyp[~(iou_matrix(hyp[box].to_numpy(), ignored[box].to_numpy()) >= 0.5).any(axis=1)]
        iou = iou_matrix(gt[box].to_numpy(), hyp[box].to_numpy())
        accumulator.update(gt.index.to_numpy(), hyp.index.to_numpy(), np.where(iou >= 0.5, 1 - iou, np.nan), frameid=frame)
    return accumulator


def mot_lines(index: int, detections, track_ids: np.ndarray) -> str:  # noqa: ANN001
    """Frame ``index``'s confirmed tracks as MOTChallenge lines (frame, id and pixel coordinates from 1)."""
    return "".join(f"{index + 1},{track_id + 1},{x1 + 1:.2f},{y1 + 1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{score:.3f},-1,-1,-1\n"
                   for (x1, y1, x2, y2), score, track_id in zip(detections.boxes, detections.scores, track_ids)
                   if track_id >= 0)


def tracker_cost(objects: int, frames: int = 300) -> None:
    """The tracker alone: ``objects`` boxes on a grid drifting with jitter over a 1920x1080 frame, ms
    per update, with colour checks (the default) and without."""
    from retina_edge.runtime.core.results import Detections
    from retina_edge.runtime.video.tracking import TrackerOptions, make_tracker

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    side = int(np.ceil(np.sqrt(objects)))
    corners = np.array([[100.0 * (k % side), 100.0 * (k // side)] for k in range(objects)])
    for name, options in (("with colour checks", TrackerOptions()),
                          ("ByteTrack alone", TrackerOptions(reid_similarity=None))):
        tracker, times = make_tracker(options), []
        for step in range(frames):
            xy = corners + 1.0 * step + rng.normal(0, 1.0, corners.shape)
            boxes = np.concatenate([xy, xy + 60], axis=1).astype(np.float32)
            detections = Detections(boxes, rng.uniform(0.5, 1.0, objects).astype(np.float32), np.zeros(objects, np.int64))
            start = time.perf_counter()
            ids = tracker.update(detections, None, image)
            times.append(time.perf_counter() - start)
        times_ms = 1e3 * np.array(times[10:])
        print(f"tracker {name} at {objects} objects: {np.median(times_ms):.2f} ms per frame median, "
              f"p99 {np.percentile(times_ms, 99):.2f} ms; {len(set(ids.tolist()) - {-1})} IDs in the last frame")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    commands = parser.add_subparsers(dest="command", required=True)
    part = commands.add_parser("throughput")
    part.add_argument("--frames", type=int, default=60)
    part = commands.add_parser("live")
    part.add_argument("--seconds", type=float, default=60.0)
    part.add_argument("--fps", type=float, default=15.0)
    part = commands.add_parser("tracking")
    part.add_argument("--frames", type=int, default=150)
    part.add_argument("--videos", type=int, default=64)
    part.add_argument("--seed", type=int, default=100,
                      help="the first video's seed (100 on: videos no setting of the tracker was chosen on)")
    part.add_argument("--objects", type=int, default=50)
    part.add_argument("--min-visibility", type=float, default=0.25,
                      help="also score with objects less visible than this ignored (MOTChallenge-style)")
    part = commands.add_parser("_worker")
    part.add_argument("--mode", choices=["batched", "sequential"], required=True)
    part.add_argument("videos", nargs="+")
    args = parser.parse_args()
    {"throughput": throughput, "live": live, "tracking": tracking, "_worker": worker}[args.command](args)


if __name__ == "__main__":
    main()
