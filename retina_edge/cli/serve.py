"""``retina-edge serve``: run Triton Inference Server on a model repository until interrupted."""

from __future__ import annotations

import argparse

from retina_edge.cli.args import positive_float, positive_int

NAME = "serve"
HELP = "start tritonserver on a model repository ('retina-edge triton' writes one), print its endpoints, stop on Ctrl-C"
EXAMPLE = "retina-edge serve --repo model_repository --host 0.0.0.0"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", required=True, help="model repository folder")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback; 0.0.0.0 for all)")
    parser.add_argument("--http-port", type=positive_int, default=8000)
    parser.add_argument("--grpc-port", type=positive_int, default=8001)
    parser.add_argument("--metrics-port", type=positive_int, default=8002)
    parser.add_argument("--ready-timeout", type=positive_float, default=300.0,
                        help="seconds to wait for the models to load (default 300)")


def run(args: argparse.Namespace) -> int:
    import signal
    import threading

    from retina_edge.errors import RetinaEdgeError
    from retina_edge.triton.server import Ports, TritonServer

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with TritonServer(args.repo, ports=Ports(args.http_port, args.grpc_port, args.metrics_port), host=args.host) as server:
            server.wait_ready(args.ready_timeout, stop=stop)
            if not stop.is_set():
                print(f"serving {args.repo}: HTTP {server.url('http')}  gRPC {server.url('grpc')}  "
                      f"metrics http://{server.url('metrics')}/metrics  (Ctrl-C stops)", flush=True)
            while not stop.wait(0.5):
                if server.process.poll() is not None:
                    raise RetinaEdgeError(f"tritonserver exited with code {server.process.returncode} (its log is above)")
        print("tritonserver stopped", flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
