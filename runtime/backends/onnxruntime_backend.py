"""ONNX Runtime backend: CPU, CUDA or TensorRT execution providers. ``run`` is thread-safe (ORT's is).

``streams=N`` on the CPU splits the cores N ways (each run gets ``cores // N`` intra-op threads),
so N runs from N threads proceed side by side instead of fighting over one thread pool.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from retina_edge.contract import INPUT_NAME
from retina_edge.errors import RetinaEdgeError
from retina_edge.optional import require
from retina_edge.resources import usable_cores
from retina_edge.runtime.backends.base import BackendOptions
from retina_edge.runtime.backends.registry import register_backend

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class OnnxRuntimeBackend:
    name = "onnxruntime"
    input_name = INPUT_NAME

    def __init__(self, path: str | os.PathLike, *, device: str = "cpu", threads: int | None = None, streams: int = 1) -> None:
        ort = require("onnxruntime", "the ONNX Runtime backend")
        if device not in PROVIDERS:
            raise RetinaEdgeError(f"unknown ONNX Runtime device {device!r}; expected one of {tuple(PROVIDERS)}")
        available = set(ort.get_available_providers())
        wanted = PROVIDERS[device][0]
        if wanted not in available:
            raise RetinaEdgeError(f"ONNX Runtime here has no {wanted} (available: {', '.join(sorted(available))}); "
                                  "install onnxruntime-gpu for CUDA/TensorRT, or use the cpu device", option="device")
        options = ort.SessionOptions()
        if streams > 1 and not threads and device == "cpu":
            threads = max(1, usable_cores() // streams)
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=[p for p in PROVIDERS[device] if p in available])
        except Exception as error:  # ORT raises its own types for unreadable or invalid models
            raise RetinaEdgeError(f"ONNX Runtime cannot load {path}: {error}") from None
        inputs = self.session.get_inputs()
        if [i.name for i in inputs] != [INPUT_NAME]:
            raise RetinaEdgeError(f"{path} has inputs {[i.name for i in inputs]}, expected one named '{INPUT_NAME}'")
        self.output_names = tuple(o.name for o in self.session.get_outputs())

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(None, {INPUT_NAME: batch})))

    def close(self) -> None:
        self.session = None


def _open(path: Path, options: BackendOptions, engine: object) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(path, device=options.device or "cpu", threads=options.threads, streams=options.streams)


register_backend("onnxruntime", factory=_open, module="onnxruntime", devices=tuple(PROVIDERS), auto=True,
                 distributions=("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"),
                 description="ONNX Runtime: CPU, CUDA or TensorRT execution providers")
