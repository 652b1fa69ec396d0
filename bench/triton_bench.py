"""Triton serving against the in-process runtime, side by side in one run.

    python bench/triton_bench.py --model synth-fp32.onnx --requests 96 --clients 1 4 16

For each client count C, C threads send JPEG images (synthetic scenes of mixed sizes), one image
per request, until ``--requests`` are answered:

- **triton**: a ``TritonDetector`` per client (gRPC) against ``tritonserver`` on loopback, serving
  the model through the repository ``retina-edge triton`` writes (dynamic batching on);
- **in-process**: the same requests through one shared ``Detector`` (decode + detect per request).

Printed per C: throughput (requests/s), p50 and p99 latency (ms), and the ratios triton/in-process.
Both compete for the same cores here, so the ratio is the serving overhead on one machine, not
what a GPU server gives.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np


def scenes(count: int) -> list[bytes]:
    from retina_edge.imageio import encode_image_rgb
    from retina_edge.data.synth import SynthConfig, render_image

    return [encode_image_rgb(cv2.resize(render_image(SynthConfig(seed=9), index)[0],
                                        (320 + 64 * (index % 4), 240 + 48 * (index % 3))))
            for index in range(count)]


def run_clients(clients: int, requests: list[bytes], make_call) -> tuple[float, list[float]]:  # noqa: ANN001
    """(seconds, latencies in ms) for ``clients`` threads sharing the request list."""
    latencies, lock, position = [], threading.Lock(), [0]

    def client() -> None:
        call = make_call()
        while True:
            with lock:
                if position[0] >= len(requests):
                    return
                data, position[0] = requests[position[0]], position[0] + 1
            start = time.perf_counter()
            call(data)
            with lock:
                latencies.append(1e3 * (time.perf_counter() - start))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help=".onnx or engine with retina-edge metadata")
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--max-batch", type=int, default=8)
    args = parser.parse_args()

    from retina_edge.imageio import decode_image_bytes
    from retina_edge.runtime import Detector, TritonDetector
    from retina_edge.triton.repository import RepositoryOptions, write_repository
    from retina_edge.triton.server import Ports, TritonServer

    requests = scenes(args.requests)
    with tempfile.TemporaryDirectory() as scratch, Detector(args.model) as detector:
        write_repository(args.model, scratch, RepositoryOptions(max_batch=args.max_batch))
        with TritonServer(scratch, ports=Ports(18800, 18801, 18802), log_file=Path(scratch) / "log") as server:
            server.wait_ready(300)
            url = server.url("grpc")
            warm = TritonDetector(url)
            warm.detect_encoded(requests[:4])
            detector.detect([decode_image_bytes(r) for r in requests[:4]])
            print(f"| clients | in-process req/s | p50 ms | p99 ms | triton req/s | p50 ms | p99 ms | "
                  f"throughput ratio | p50 ratio |\n|---|---|---|---|---|---|---|---|---|")
            for clients in args.clients:
                local_s, local = run_clients(clients, requests, lambda: lambda data: detector.detect([decode_image_bytes(data)]))
                remotes = []

                def remote_call():  # noqa: ANN202
                    remote = TritonDetector(url)
                    remotes.append(remote)
                    return lambda data: remote.detect_encoded([data])

                served_s, served = run_clients(clients, requests, remote_call)
                for remote in remotes:
                    remote.close()
                rates = len(requests) / local_s, len(requests) / served_s
                p = {name: np.percentile(values, [50, 99]) for name, values in (("local", local), ("served", served))}
                print(f"| {clients} | {rates[0]:.1f} | {p['local'][0]:.0f} | {p['local'][1]:.0f} | {rates[1]:.1f} | "
                      f"{p['served'][0]:.0f} | {p['served'][1]:.0f} | {rates[1] / rates[0]:.2f} | "
                      f"{p['served'][0] / p['local'][0]:.2f} |")
            warm.close()


if __name__ == "__main__":
    main()
