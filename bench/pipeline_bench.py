"""Video pipeline: throughput against pure inference, and resident memory over a long run.

    python bench/pipeline_bench.py --model synth-fp32.onnx --frames 600 --long 10000

1. Pure inference: ``detector.detect(frame)`` over frames already decoded in memory, one by one.
2. Pipeline: the same frames from an MP4 file through ``Pipeline.run`` (decode in the capture
   thread, overlapping inference). Ratio = pipeline FPS / pure-inference FPS (target >= 0.9).
3. Memory: ``--long`` frames through the pipeline from a looping in-memory source; RSS is sampled
   every 500 frames and compared with the first sample after warm-up (target: within 5%).
4. In flight (``--streams 1 2``): for each value, a detector opened with ``streams=N``; the MP4
   through the pipeline (files keep N frames in flight) -> FPS; then a paced live source
   (``--live-fps``, frames dropped when inference falls behind) -> median and p90 capture-to-result
   latency, with the live default (one in flight) and with N in flight. Values alternate for
   ``--rounds`` rounds so machine noise hits them alike; medians over rounds are printed.
   ``auto`` is the default of ``detect`` on files: ``Detector(options=BackendOptions(streams="auto"))`` probes (and caches)
   the count, and its row says which it picked.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


class LoopingSource:
    """``count`` frames cycling over a few pre-rendered ones (no decode cost, no end until count).
    ``live_fps``: deliver frames at this rate, as a camera does, and count as a live source."""

    fps = 30.0
    spec = "loop"

    def __init__(self, frames, count: int, *, live_fps: float | None = None) -> None:  # noqa: ANN001
        self.frames, self.count, self.position = frames, count, 0
        self.live, self.interval, self.next_time = live_fps is not None, 1 / (live_fps or 1), time.perf_counter()

    def open(self) -> None:
        self.position = 0

    def read(self):  # noqa: ANN201
        if self.position >= self.count:
            return None
        if self.live:
            time.sleep(max(0.0, self.next_time - time.perf_counter()))
            self.next_time = max(self.next_time + self.interval, time.perf_counter())
        self.position += 1
        return self.frames[self.position % len(self.frames)]

    def close(self) -> None:
        pass


def main() -> None:
    import cv2

    from retina_edge.quality.bench import process_rss_mb
    from retina_edge.runtime import Detector
    from retina_edge.runtime.video import Pipeline
    from retina_edge.data.synth_video import SyntheticVideo, write_video

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--long", type=int, default=10000)
    parser.add_argument("--streams", type=lambda text: text if text == "auto" else int(text), nargs="+",
                        help="compare these in-flight counts, or auto (part 4 only)")
    parser.add_argument("--live-fps", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.streams:
        in_flight_table(args)
        return
    detector = Detector(args.model)
    with tempfile.TemporaryDirectory() as scratch:
        video = write_video(Path(scratch) / "bench.mp4", SyntheticVideo(seed=5), args.frames)
        capture = cv2.VideoCapture(str(video))
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame[:, :, ::-1].copy())
        for frame in frames[:10]:
            detector.detect(frame)
        start = time.perf_counter()
        for frame in frames:
            detector.detect(frame)
        pure_fps = len(frames) / (time.perf_counter() - start)
        with Pipeline(detector) as pipeline:
            start = time.perf_counter()
            processed = sum(1 for _ in pipeline.run(str(video)))
            pipeline_fps = processed / (time.perf_counter() - start)
    print(f"pure inference {pure_fps:.1f} FPS; pipeline from MP4 {pipeline_fps:.1f} FPS ({processed} frames); "
          f"ratio {pipeline_fps / pure_fps:.3f}")
    if args.long:
        samples = []
        with Pipeline(detector) as pipeline:
            for result in pipeline.run(LoopingSource(frames[:30], args.long)):
                if result.index % 500 == 499:
                    samples.append(process_rss_mb())
        baseline = samples[1] if len(samples) > 1 else samples[0]  # after warm-up
        drift = max(abs(s - baseline) for s in samples[1:]) / baseline if len(samples) > 1 else 0.0
        print(f"{args.long} frames: RSS MB every 500 frames: {', '.join(f'{s:.0f}' for s in samples)}; "
              f"max drift after warm-up {100 * drift:.2f}%")


def _planned_end(_message: str) -> None:
    """The paced source's end is planned, not a lost camera: nothing to log."""


def in_flight_table(args: argparse.Namespace) -> None:
    import numpy as np

    from retina_edge.runtime import Detector
    from retina_edge.runtime.backends import BackendOptions
    from retina_edge.runtime.video import Pipeline, PipelineConfig
    from retina_edge.runtime.video.sources import ReconnectPolicy
    from retina_edge.data.synth_video import SyntheticVideo, write_video

    once = ReconnectPolicy(attempts=0)  # the paced source ends after --frames; no reopening
    detectors = {}
    for value in args.streams:
        detector = Detector(args.model, options=BackendOptions(streams=value))
        detectors[f"auto (picked {detector.streams})" if value == "auto" else str(value)] = detector
        if value == "auto":
            print(f"streams auto picked {detector.streams_choice.describe()}")
    rows = {label: {"fps": [], "live_p50": [], "live_p90": [], "live_n_p50": []} for label in detectors}
    first = next(iter(detectors))
    with tempfile.TemporaryDirectory() as scratch:
        video = write_video(Path(scratch) / "bench.mp4", SyntheticVideo(seed=5), args.frames)
        with Pipeline(detectors[first]) as pipeline:
            frames = [result.image for result in pipeline.run(str(video))][:30]
        for _ in range(args.rounds):
            for label, detector in detectors.items():
                n = detector.streams
                with Pipeline(detector) as pipeline:
                    start = time.perf_counter()
                    processed = sum(1 for _ in pipeline.run(str(video)))
                    rows[label]["fps"].append(processed / (time.perf_counter() - start))
                for key, config in (("live", PipelineConfig(reconnect=once)), ("live_n", PipelineConfig(in_flight=n, reconnect=once))):
                    with Pipeline(detector, config) as pipeline:
                        source = LoopingSource(frames, args.frames, live_fps=args.live_fps)
                        latencies = [result.latency_ms for result in pipeline.run(source, log=_planned_end)][3:]
                    rows[label][f"{key}_p50"].append(float(np.percentile(latencies, 50)))
                    if key == "live":
                        rows[label]["live_p90"].append(float(np.percentile(latencies, 90)))
    print(f"| streams | file FPS | ratio to streams={first} | live p50 ms (1 in flight) | live p90 ms | "
          f"live p50 ms ({'N'} in flight) |\n|---|---|---|---|---|---|")
    base = float(np.median(rows[first]["fps"]))
    for label, row in rows.items():
        fps = float(np.median(row["fps"]))
        print(f"| {label} | {fps:.2f} | {fps / base:.2f} | {np.median(row['live_p50']):.0f} | {np.median(row['live_p90']):.0f} | "
              f"{np.median(row['live_n_p50']):.0f} |")


if __name__ == "__main__":
    main()
