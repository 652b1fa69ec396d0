"""A recording process for test_robotics_sinks: detects synthetic frames of two sources and records
them (``--record``, through the CLI's options) until SIGINT or, with ``error``, until it fails.

SIGINT is handled as ``retina-edge detect`` handles it: the handler only asks the loop to stop, and
leaving the ``with`` block finishes the recording. Prints ``wrote N`` after each frame pair.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from retina_edge.cli import robotics_options
from retina_edge.data.synth_video import SyntheticVideo
from retina_edge.runtime import Detector
from retina_edge.runtime.video import FrameResult


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("mode", choices=["sigint", "error"])
    robotics_options.add_arguments(parser)
    args = parser.parse_args()
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    videos = [SyntheticVideo(seed=1), SyntheticVideo(seed=2)]
    names = ["synthetic://0", "synthetic://1"]
    [sink] = robotics_options.open_sinks(args, names)
    with Detector(args.model, backend="onnxruntime") as detector, sink:
        for index in range(1000):
            if stop:
                break
            if args.mode == "error" and index == 3:
                raise RuntimeError("planted failure after 3 frames")
            images = [video.frame(index) for video in videos]
            captured = time.time()
            for source, found in enumerate(detector.detect(images)):
                sink.write(FrameResult(index, captured, images[source], found, 0.0, 0.0, source, names[source]))
            print(f"wrote {index + 1}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
