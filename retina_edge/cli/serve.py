"""``retina-edge serve``: run Triton Inference Server on a model repository until interrupted.

How it protects its users: Triton 2.51 aborts (``std::bad_alloc``, signal 6) on one HTTP request
declaring a huge input (shape ``[1, 99999999999]`` with JSON data), before any model sees it; its
gRPC endpoint refuses the same request. So the HTTP and metrics endpoints stay on loopback unless
``--http-host`` says otherwise (with a warning), a non-loopback ``--host`` (gRPC) is said aloud, and
a server that dies while serving is restarted for as long as ``serve`` runs, with backoff
(:class:`~retina_edge.triton.server.RestartPolicy`: 1 s, doubling per death in ten minutes, at most
30 s): a bound on restarts let six crafted requests end the service. Such requests are not
filtered before Triton (that takes a proxy that limits request sizes, in front of a non-loopback
HTTP endpoint); ``--max-restarts N`` gives up after N restarts in ten minutes instead.
"""

from __future__ import annotations

import argparse
import logging

from retina_edge.cli.args import non_negative_int, port_number, positive_float

NAME = "serve"
HELP = "start tritonserver on a model repository ('retina-edge triton' writes one), print its endpoints, stop on Ctrl-C"
EXAMPLE = "retina-edge serve --repo model_repository --host 0.0.0.0"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", required=True, help="model repository folder")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address of the gRPC endpoint (what TritonDetector and detect use; default loopback; "
                             "0.0.0.0 for all)")
    parser.add_argument("--http-host", default="127.0.0.1",
                        help="address of the HTTP and metrics endpoints (default loopback: Triton 2.51 aborts on some "
                             "malformed HTTP requests; expose them only behind a proxy that limits request sizes)")
    parser.add_argument("--http-port", type=port_number, default=8000)
    parser.add_argument("--grpc-port", type=port_number, default=8001)
    parser.add_argument("--metrics-port", type=port_number, default=8002)
    parser.add_argument("--ready-timeout", type=positive_float, default=300.0,
                        help="seconds to wait for the models to load (default 300)")
    parser.add_argument("--max-restarts", type=non_negative_int,
                        help="give up after this many restarts of a tritonserver that died within ten minutes (default: "
                             "restart it for as long as serve runs, waiting 1 s, doubling per recent death, at most 30 s)")


def _warn_about_exposure(args: argparse.Namespace) -> None:
    from retina_edge.triton.server import is_loopback

    if not is_loopback(args.host):
        logger.warning("gRPC listens on %s: anyone who reaches this machine can send requests (no authentication); "
                       "HTTP stays on %s", args.host, args.http_host)
    if not is_loopback(args.http_host):
        logger.warning("HTTP listens on %s: one malformed request (a huge declared input) aborts Triton 2.51; serve "
                       "restarts it (with backoff), but put a proxy that limits request sizes in front", args.http_host)


def run(args: argparse.Namespace) -> int:
    import signal
    import threading
    import time

    from retina_edge.triton.server import Ports, RestartPolicy, ServerDiedError, TritonServer, has_nvidia_gpu

    ports, deaths = Ports(args.http_port, args.grpc_port, args.metrics_port), []
    policy = RestartPolicy(max_restarts=args.max_restarts)
    _warn_about_exposure(args)
    cpu_note = not has_nvidia_gpu()  # said once the server runs: the line tritonserver still prints about CUDA there
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.is_set():
            with TritonServer(args.repo, ports=ports, host=args.host, http_host=args.http_host) as server:
                server.wait_ready(args.ready_timeout, stop=stop)
                if not stop.is_set():
                    if cpu_note:
                        logger.info("no NVIDIA GPU here: Triton runs the models on the CPU (its line "
                                    "'CudaDriverHelper has not been initialized' says only that)")
                        cpu_note = False
                    print(f"serving {args.repo}: HTTP {server.url('http')}  gRPC {server.url('grpc')}  "
                          f"metrics http://{server.url('metrics')}/metrics  (Ctrl-C stops)", flush=True)
                while not stop.wait(0.5) and server.process.poll() is None:
                    pass
            if stop.is_set():
                break
            now = time.monotonic()
            deaths = policy.recent(deaths, now) + [now]
            delay, code = policy.delay(len(deaths)), server.process.returncode
            if delay is None:
                raise ServerDiedError(f"tritonserver exited with code {code} (its log is above), {len(deaths)} times "
                                      f"in {policy.window / 60:.0f} minutes: not restarting it again (--max-restarts)")
            logger.warning("tritonserver exited with code %s (its log is above), %d time(s) in %.0f minutes; restarting "
                           "it in %.0f s", code, len(deaths), policy.window / 60, delay)
            stop.wait(delay)
        print("tritonserver stopped", flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 130  # a stop by signal (Ctrl-C or SIGTERM), as every command answers it
