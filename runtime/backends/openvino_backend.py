"""OpenVINO backend (x86 and ARM CPUs). ``run`` is thread-safe: each call takes an idle infer
request from a pool (a new one when all are busy) and gives it back afterwards.

OpenVINO runs FP32 graphs in bf16 on CPUs that have it unless told otherwise; ``precision`` is
``"f32"`` by default so results match the reference, ``"bf16"`` trades accuracy for speed.
``streams=1`` compiles for latency (one stream on all cores); ``streams=N`` for throughput
(N streams, each a share of the cores, so N requests run at once).
"""

from __future__ import annotations

import ctypes
import os
import queue
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from retina_edge.contract import INPUT_NAME
from retina_edge.errors import RetinaEdgeError
from retina_edge.optional import require
from retina_edge.resources import c_library
from retina_edge.runtime.backends.base import BackendOptions
from retina_edge.runtime.backends.registry import register_backend


class OpenVinoBackend:
    name = "openvino"
    input_name = INPUT_NAME

    def __init__(self, path: str | os.PathLike, *, device: str = "CPU", precision: str = "f32", threads: int | None = None,
                 streams: int = 1) -> None:
        ov = require("openvino", "the OpenVINO backend")
        if precision not in ("f32", "bf16", "f16"):
            raise RetinaEdgeError(f"unknown OpenVINO precision {precision!r}; expected f32, bf16 or f16")
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY" if streams == 1 else "THROUGHPUT"}
        if streams > 1:
            config["NUM_STREAMS"] = streams
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            with _signal_stack_kept():
                self.compiled = core.compile_model(core.read_model(str(path)), device.upper(), config)
        except Exception as error:  # OpenVINO raises RuntimeError subclasses with long texts
            raise RetinaEdgeError(f"OpenVINO cannot load {path} on {device}: {openvino_reason(error)}") from None
        # A tensor may have several names (a Cast right after the input, as an FP16 stem has, adds one):
        # look ours up among all of them.
        if INPUT_NAME not in self.compiled.inputs[0].get_names():
            raise RetinaEdgeError(f"{path} has no input named '{INPUT_NAME}'")
        self.output_names = tuple(name for output in self.compiled.outputs for name in output.get_names())
        self.precision = precision
        self._idle: queue.SimpleQueue = queue.SimpleQueue()  # (request, input shape it last ran)
        self._new_shape = threading.Lock()

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        try:
            request, shape = self._idle.get_nowait()
        except queue.Empty:
            request, shape = self.compiled.create_infer_request(), None
        try:
            if shape == batch.shape:
                results = request.infer({INPUT_NAME: batch})
            else:
                # A request's first run with an input shape specialises it; two threads doing so
                # at once deadlocked OpenVINO 2026.4 (streams=2 on 2 cores, about one process in
                # three), so those runs go one at a time. Later runs of a shape are concurrent.
                with self._new_shape:
                    results = request.infer({INPUT_NAME: batch})
            # infer() copies the outputs (share_outputs=False), so the request can be reused.
            return {name: np.asarray(value) for output, value in results.items() for name in output.get_names()}
        finally:
            self._idle.put((request, batch.shape))

    def close(self) -> None:
        self._idle = queue.SimpleQueue()
        self.compiled = None


def openvino_reason(error: BaseException) -> str:
    """The line of an OpenVINO error that says what went wrong: its text starts with a line per source
    location it passed (``Exception from src/inference/src/cpp/core.cpp:117:``, ``Check 'val_i >= 0'
    failed at src/.../istreams_executor.cpp:58:``), and the first of those alone said nothing."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reasons = [line for line in lines if not re.search(r"\.(?:cpp|hpp|cc|h):\d+:$", line)]
    return (reasons or lines or [type(error).__name__])[0]


def _open(path: Path, options: BackendOptions, engine: object) -> OpenVinoBackend:
    return OpenVinoBackend(path, device=options.device or "CPU", precision=options.precision_hint, threads=options.threads,
                           streams=options.streams)


register_backend("openvino", factory=_open, module="openvino", devices=("CPU", "GPU", "NPU", "AUTO", "HETERO", "MULTI"),
                 auto=True, description="OpenVINO: x86 and ARM CPUs, Intel GPUs and NPUs")


class _SignalStack(ctypes.Structure):
    _fields_ = [("sp", ctypes.c_void_p), ("flags", ctypes.c_int), ("size", ctypes.c_size_t)]  # POSIX stack_t


@contextmanager
def _signal_stack_kept() -> Iterator[None]:
    """Give the calling thread its own alternate signal stack back after the block.

    OpenVINO 2026.4's CPU plugin installs an alternate signal stack on the thread that compiles a
    model and reinstates the one it found when that compiled model is destroyed. With two compiled
    models destroyed in the order they were made (``streams="auto"`` keeps one of two), the thread
    is left pointing at a freed stack, and the next signal handled there (Ctrl-C, SIGTERM) crashed
    the process. Restoring the thread's stack right after compiling means every compiled model
    saved, and later reinstates, the thread's real one. A no-op where there is no ``sigaltstack``.
    """
    sigaltstack = getattr(c_library(), "sigaltstack", None)
    if sigaltstack is None:  # Windows
        yield
        return
    saved = _SignalStack()
    known = sigaltstack(None, ctypes.byref(saved)) == 0
    try:
        yield
    finally:
        if known:
            saved.flags &= ~1  # SS_ONSTACK is reported, never set
            sigaltstack(ctypes.byref(saved), None)
