"""OpenVINO backend (x86 and ARM CPUs). ``run`` is thread-safe: one infer request per call.

OpenVINO runs FP32 graphs in bf16 on CPUs that have it unless told otherwise; ``precision`` is
``"f32"`` by default so results match the reference, ``"bf16"`` trades accuracy for speed.
``streams=1`` compiles for latency (one stream on all cores); ``streams=N`` for throughput
(N streams, each a share of the cores, so N requests run at once).
"""

from __future__ import annotations

import os

import numpy as np

from retina_edge.contract import INPUT_NAME
from retina_edge.errors import RetinaEdgeError
from retina_edge.optional import require


class OpenVinoBackend:
    name = "openvino"

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
            self.compiled = core.compile_model(core.read_model(str(path)), device.upper(), config)
        except Exception as error:  # OpenVINO raises RuntimeError subclasses with long texts
            raise RetinaEdgeError(f"OpenVINO cannot load {path} on {device}: {str(error).splitlines()[0]}") from None
        if self.compiled.inputs[0].get_any_name() != INPUT_NAME:
            raise RetinaEdgeError(f"{path} has no input named '{INPUT_NAME}'")
        self.output_names = tuple(output.get_any_name() for output in self.compiled.outputs)
        self.precision = precision

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        request = self.compiled.create_infer_request()
        results = request.infer({INPUT_NAME: batch})
        return {output.get_any_name(): np.asarray(value) for output, value in results.items()}

    def close(self) -> None:
        self.compiled = None
