"""Start and stop a ``tritonserver`` on a model repository (``retina-edge serve``).

The binary is the one on PATH (NVIDIA's containers) or the CPU build inside the ``nvidia-pytriton``
wheel; for the latter, its Python backend gets the stub built for this Python version copied
beside it (the wheel ships one per version). The server's Python stub runs its own interpreter, so
its model (:mod:`.backend_model`) is given this environment's site-packages to find numpy and
retina-edge.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from retina_edge.cache import cache_root
from retina_edge.errors import MissingDependencyError, RetinaEdgeError
from retina_edge.optional import install_hint


@dataclass(frozen=True)
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


def find_tritonserver() -> tuple[Path, Path | None]:
    """(tritonserver, backend directory or None for the binary's own default)."""
    on_path = shutil.which("tritonserver")
    if on_path:
        return Path(on_path), None
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or spec.origin is None:
        raise MissingDependencyError("tritonserver", "retina-edge serve", install_hint("pytriton"))
    root = Path(spec.origin).parent / "tritonserver"
    return root / "bin" / "tritonserver", _backends_with_stub(root)


def _backends_with_stub(root: Path) -> Path:
    """A backend directory whose Python backend has this interpreter's stub next to it."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise RetinaEdgeError(f"nvidia-pytriton has no Python backend stub for Python {version}")
    target = cache_root() / "triton-backends" / version
    python = target / "python"
    if not (python / "triton_python_backend_stub").is_file():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(root / "backends" / "python", python)  # the backend library and its utils
        shutil.copy2(stub, python / "triton_python_backend_stub")
    return target


LOOPBACK = "127.0.0.1"


class ServerDiedError(RetinaEdgeError):
    """tritonserver kept dying (the CLI exits 1, as for a lost server)."""

    exit_code = 1


@dataclass(frozen=True)
class RestartPolicy:
    """When to start a ``tritonserver`` again that died while serving. One HTTP request can abort
    Triton 2.51 (a huge declared input, see :mod:`retina_edge.cli.serve`), so a bound on restarts let
    six such requests in ten minutes end the service: by default it is restarted for as long as it
    runs, after a wait that doubles with each death in the last ``window`` seconds (``first_delay``,
    2x, 4x, ... at most ``max_delay``), so a server that keeps dying costs little and one that died
    once in a while comes back at once. ``max_restarts``: give up (None: never) after that many
    restarts within ``window``."""

    first_delay: float = 1.0
    max_delay: float = 30.0
    window: float = 600.0
    max_restarts: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.first_delay <= self.max_delay or not self.window > 0:
            raise RetinaEdgeError(f"a restart policy needs 0 <= first_delay <= max_delay and a window above 0, got "
                                  f"{self.first_delay}, {self.max_delay} and {self.window}")
        if self.max_restarts is not None and self.max_restarts < 0:
            raise RetinaEdgeError(f"max_restarts must be at least 0, got {self.max_restarts}", option="max_restarts")

    def recent(self, deaths: list[float], now: float) -> list[float]:
        """The deaths (monotonic seconds) within the window before ``now``."""
        return [t for t in deaths if now - t < self.window]

    def delay(self, recent_deaths: int) -> float | None:
        """Seconds to wait before the next start after ``recent_deaths`` deaths within the window
        (the last one included), or None to give up."""
        if self.max_restarts is not None and recent_deaths > self.max_restarts:
            return None
        return min(self.max_delay, self.first_delay * 2.0 ** min(recent_deaths - 1, 30))


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def models_in(repository: Path) -> list[str]:
    """The model folders of ``repository`` (those with a ``config.pbtxt``)."""
    return sorted(folder.name for folder in repository.iterdir() if (folder / "config.pbtxt").is_file())


def has_nvidia_gpu() -> bool:
    """Whether this machine shows an NVIDIA GPU: a driver's device node (``/dev/nvidia0``, or a
    Jetson's ``/dev/nvhost-ctrl-gpu``); a container started without GPUs has none."""
    dev = Path("/dev")
    return any(dev.glob("nvidia[0-9]*")) or (dev / "nvhost-ctrl-gpu").exists()


def cpu_only_flags(gpu: bool) -> list[str]:
    """tritonserver flags for a machine without a GPU: no pinned or CUDA memory pools and no GPU
    metrics, which it otherwise tries to set up and reports failing (a warning about the CUDA
    driver, "Error: Failed to initialize NVML", "DCGM unable to start") on every start."""
    if gpu:
        return []
    return ["--pinned-memory-pool-byte-size=0", "--cuda-memory-pool-byte-size=0:0", "--allow-gpu-metrics=false"]


def check_ports_free(host: str, ports: Ports) -> None:
    """Raise if one of ``ports`` is taken on ``host`` (tritonserver would say so deep in its log and exit)."""
    import socket

    named = (("HTTP", ports.http), ("gRPC", ports.grpc), ("metrics", ports.metrics))
    for index, (kind, port) in enumerate(named):
        same = [other for other, value in named[index + 1:] if value == port]
        if same:  # tritonserver would fail to bind the second one, deep in its log
            raise RetinaEdgeError(f"the {kind} and {same[0]} ports are both {port}: each endpoint needs its own port",
                                  option=(f"{kind.lower()}_port", f"{same[0].lower()}_port"))
    for kind, port in named:
        if not 0 < port < 65536:
            raise RetinaEdgeError(f"the {kind} port must be between 1 and 65535, got {port}")
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as tritonserver binds: TIME_WAIT is fine
            try:
                probe.bind((host, port))
            except OSError as error:
                raise RetinaEdgeError(f"the {kind} port {port} on {host} is taken ({error.strerror}): another server "
                                      "runs there; stop it or choose other ports") from None


class TritonServer:
    """A running ``tritonserver`` serving ``repository``, its gRPC endpoint on ``host`` (loopback unless
    asked) and its HTTP and metrics endpoints on ``http_host`` (loopback unless asked: Triton 2.51
    aborts on an HTTP request declaring a huge input, see :mod:`retina_edge.cli.serve`), its log in
    ``log_file`` (else ours); stop() or leaving the ``with`` block shuts it down (SIGINT to its process
    group, SIGKILL after ``grace`` seconds), leaving no process behind."""

    def __init__(self, repository: str | os.PathLike, *, ports: Ports = Ports(), host: str = LOOPBACK,
                 http_host: str = LOOPBACK, log_file: str | os.PathLike | None = None) -> None:
        repository = Path(repository)
        if not repository.is_dir():
            raise RetinaEdgeError(f"model repository not found: {repository}")
        if not models_in(repository):
            raise RetinaEdgeError(f"{repository} holds no model (no folder with a config.pbtxt): write one into it "
                                  "with retina-edge triton")
        for address in dict.fromkeys((host, http_host)):
            check_ports_free(address, ports)
        binary, backends = find_tritonserver()
        command = [str(binary), f"--model-repository={repository}", f"--http-port={ports.http}",
                   f"--grpc-port={ports.grpc}", f"--metrics-port={ports.metrics}", f"--http-address={http_host}",
                   f"--grpc-address={host}", f"--metrics-address={http_host}", *cpu_only_flags(has_nvidia_gpu())]
        if backends is not None:
            command.append(f"--backend-directory={backends}")
        site_packages = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
        environment = {**os.environ, "RETINA_EDGE_SITE_PACKAGES": os.pathsep.join(site_packages)}
        if backends is not None:  # the copied stub finds the wheel's bundled libraries (libcudart) here
            libraries = binary.parents[2].with_name("nvidia_pytriton.libs")
            environment["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(libraries), os.environ.get("LD_LIBRARY_PATH")]))
        self.ports, self.host, self.http_host = ports, host, http_host
        self.log_file = Path(log_file) if log_file else None
        output = open(self.log_file, "w") if self.log_file else None  # noqa: SIM115 - the child holds it
        # Its own session, so stop() reaches the Python stubs too; its log goes to ``log_file`` or ours.
        self.process = subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        if output:
            output.close()

    def url(self, kind: str = "http") -> str:
        return f"{self.host if kind == 'grpc' else self.http_host}:{getattr(self.ports, kind)}"

    def wait_ready(self, timeout: float = 120.0, *, stop: threading.Event | None = None) -> None:
        """Return when the server and its models are ready; raise if it exits or ``timeout`` passes
        (``stop`` set: return at once, for a caller interrupted while models load)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            if self.process.poll() is not None:
                log = self.log_file.read_text()[-3000:] if self.log_file else "(its log is above)"
                raise RetinaEdgeError(f"tritonserver exited with code {self.process.returncode}: {log}")
            try:
                with urllib.request.urlopen(f"http://{self.url()}/v2/health/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.25)
        if stop and stop.is_set():
            return
        self.stop()
        raise RetinaEdgeError(f"tritonserver did not become ready within {timeout:.0f} s")

    def stop(self, grace: float = 15.0) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)  # the server and its Python stubs
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        try:  # Python stubs left behind (a server that aborted, or one that did not stop in time)
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        return self.process.returncode

    def __enter__(self) -> TritonServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
