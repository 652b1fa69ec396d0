"""Video pipeline: throughput against pure inference, and resident memory over a long run.

    python bench/pipeline_bench.py --model synth-fp32.onnx --frames 600 --long 10000

1. Pure inference: ``detector.detect(frame)`` over frames already decoded in memory, one by one.
2. Pipeline: the same frames from an MP4 file through ``Pipeline.run`` (decode in the capture
   thread, overlapping inference). Ratio = pipeline FPS / pure-inference FPS (target >= 0.9).
3. Memory: ``--long`` frames through the pipeline from a looping in-memory source; RSS is sampled
   every 500 frames and compared with the first sample after warm-up (target: within 5%).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


class LoopingSource:
    """``count`` frames cycling over a few pre-rendered ones (no decode cost, no end until count)."""

    live = False
    fps = 30.0
    spec = "loop"

    def __init__(self, frames, count: int) -> None:  # noqa: ANN001
        self.frames, self.count, self.position = frames, count, 0

    def open(self) -> None:
        self.position = 0

    def read(self):  # noqa: ANN201
        if self.position >= self.count:
            return None
        self.position += 1
        return self.frames[self.position % len(self.frames)]

    def close(self) -> None:
        pass


def main() -> None:
    import cv2

    from retina_edge.bench import process_rss_mb
    from retina_edge.runtime import Detector
    from retina_edge.runtime.pipeline import Pipeline
    from retina_edge.synth_video import SyntheticVideo, write_video

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--long", type=int, default=10000)
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
