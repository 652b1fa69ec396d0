"""Triton under load: 8 concurrent clients over 500 images, a sixth of them with no detections.

    python bench/triton_load.py --model m.onnx --images 500 --clients 8

Each client (its own ``TritonDetector``, gRPC, one image per request) takes every C-th JPEG of the
list; every sixth image is uniform grey, which a model keeping scores above ~0.3 answers with no
detections. Printed: requests answered and failed, answers that differ from the in-process
``Detector`` on the same JPEGs (box for box, bit for bit), the images with no detections, and the
error lines and tracebacks in the server's log while serving. Counts, not timings: the wall time is
printed only to say how long it ran.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np


def jpegs(count: int, empty_every: int = 6) -> list[bytes]:
    from retina_edge.data.synth import SynthConfig, render_image
    from retina_edge.imageio import encode_image_rgb

    out = []
    for index in range(count):
        scene = cv2.resize(render_image(SynthConfig(seed=5), index)[0], (90 + 37 * (index % 5), 70 + 23 * (index % 7)))
        if index % empty_every == empty_every - 1:
            scene = np.full_like(scene, 128)
        out.append(encode_image_rgb(scene, ".jpg", quality=90))
    return out


def same(a, b) -> bool:  # noqa: ANN001
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("boxes", "scores", "labels"))


def log_problems(text: str) -> list[str]:
    return [line for line in text.splitlines()
            if (line.startswith("E") and line[1:5].isdigit()) or "Traceback" in line or "PyCapsule" in line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help=".onnx with retina-edge metadata")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-batch", type=int, default=8)
    args = parser.parse_args()

    from retina_edge.imageio import decode_image_bytes
    from retina_edge.runtime import Detector, TritonDetector
    from retina_edge.triton.repository import RepositoryOptions, write_repository
    from retina_edge.triton.server import Ports, TritonServer

    encoded = jpegs(args.images)
    with Detector(args.model) as detector:
        expected = [detector.detect([decode_image_bytes(data)])[0] for data in encoded]
    answers, failures = [None] * len(encoded), []
    with tempfile.TemporaryDirectory() as scratch:
        write_repository(args.model, Path(scratch) / "repo", RepositoryOptions(max_batch=args.max_batch))
        log = Path(scratch) / "tritonserver.log"
        with TritonServer(Path(scratch) / "repo", ports=Ports(18810, 18811, 18812), log_file=log) as server:
            server.wait_ready(300)
            start_of_serving = log.stat().st_size

            def client(first: int) -> None:
                with TritonDetector(server.url("grpc"), retries=0) as remote:
                    for index in range(first, len(encoded), args.clients):
                        try:
                            answers[index] = remote.detect_encoded([encoded[index]])[0]
                        except Exception as error:  # noqa: BLE001 - counted and reported
                            failures.append((index, str(error)[:200]))

            started = time.perf_counter()
            threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - started
            problems = log_problems(log.read_bytes()[start_of_serving:].decode(errors="replace"))
    differ = sum(1 for want, got in zip(expected, answers) if got is not None and not same(want, got))
    empty = sum(1 for want in expected if len(want.boxes) == 0)
    print(f"{len(encoded)} images, {args.clients} clients, max batch {args.max_batch}: "
          f"{len(encoded) - len(failures)} answered, {len(failures)} failed, {differ} differ from the in-process Detector; "
          f"{empty} with no detections; server log while serving: {len(problems)} error lines/tracebacks; {seconds:.1f} s")
    for index, message in failures[:5]:
        print(f"  failed: image {index}: {message}")
    for line in problems[:5]:
        print(f"  log: {line[:200]}")


if __name__ == "__main__":
    main()
