"""TensorRT backend: a retina-edge engine file, tensors bound by name (TensorRT >= 10 API).

A thin layer: shapes, dtypes and names come from the engine and from tested functions; this
module only allocates buffers (cuda-python, or pycuda), copies, and calls ``execute_async_v3``.
``run`` is serialised by a lock: one execution context serves all callers.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from retina_edge.contract import INPUT_NAME
from retina_edge.errors import RetinaEdgeError
from retina_edge.optional import require
from retina_edge.runtime.backends.base import BackendOptions
from retina_edge.runtime.backends.registry import register_backend
from retina_edge.runtime.tensorrt.cuda_memory import make_stream_and_allocator
from retina_edge.runtime.tensorrt.engine_file import EngineFile, check_compatible, current_gpu


def import_tensorrt():  # noqa: ANN201
    return require("tensorrt", "TensorRT engines")


class TensorRTBackend:
    name = "tensorrt"
    input_name = INPUT_NAME

    def __init__(self, engine_file: EngineFile, *, use_cuda_graph: bool = False) -> None:
        trt = import_tensorrt()
        path = engine_file.source
        gpu = current_gpu()
        check_compatible(engine_file, tensorrt_version=trt.__version__, device_name=gpu["name"],
                         compute_capability=gpu["compute_capability"], source=path)
        self.logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self.logger)
        build = engine_file.header.get("build", {})
        if build.get("version_compatible"):
            runtime.engine_host_code_allowed = True  # such plans embed the lean runtime (as trtexec allows)
        if build.get("dla_core") is not None:
            runtime.DLA_core = int(build["dla_core"])
        self.engine = runtime.deserialize_cuda_engine(engine_file.plan)
        if self.engine is None:
            raise RetinaEdgeError(f"TensorRT could not deserialize {path}; rebuild the engine")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.output_names = tuple(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        profile = self.engine.get_tensor_profile_shape(INPUT_NAME, 0)
        self.min_batch, self.max_batch = int(profile[0][0]), int(profile[2][0])
        self.stream, self._buffer_class = make_stream_and_allocator()
        self.buffers = {}
        self._allocate(self.max_batch)
        self.use_cuda_graph = use_cuda_graph
        self._lock = threading.Lock()
        self._graph_batch = None

    def _set_batch(self, batch: int) -> None:
        """Set the input shape; TensorRT reports a refused shape by returning False, not raising."""
        shape = (batch, *self.engine.get_tensor_shape(INPUT_NAME)[1:])
        if not self.context.set_input_shape(INPUT_NAME, shape):
            raise RetinaEdgeError(f"TensorRT refused the input shape {shape} (profile batch range "
                                  f"{self.min_batch}..{self.max_batch})")

    def _allocate(self, batch: int) -> None:
        self._set_batch(batch)
        for name in (INPUT_NAME, *self.output_names):
            shape = tuple(self.context.get_tensor_shape(name))
            self.buffers[name] = self._buffer_class(shape, self.dtypes[name])
            self.context.set_tensor_address(name, self.buffers[name].device)

    def _enqueue(self, nbytes_in: int) -> None:
        self.buffers[INPUT_NAME].to_device(self.stream, nbytes_in)
        if not self.context.execute_async_v3(self.stream.handle):
            raise RetinaEdgeError("TensorRT failed to enqueue the inference (execute_async_v3 returned False; see its log)")
        for name in self.output_names:
            self.buffers[name].to_host(self.stream)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        count = batch.shape[0]
        if not self.min_batch <= count <= self.max_batch:  # never stale rows of an earlier shape
            raise RetinaEdgeError(f"a batch of {count} is outside the engine's profile range {self.min_batch}..{self.max_batch}"
                                  " (Detector pads short batches up to the minimum)")
        with self._lock:
            host_in = self.buffers[INPUT_NAME].host.reshape(-1)
            host_in[: batch.size] = batch.astype(self.dtypes[INPUT_NAME], copy=False).reshape(-1)
            nbytes_in = batch.size * self.dtypes[INPUT_NAME].itemsize
            if self._graph_batch != count:
                self._set_batch(count)
            if self.use_cuda_graph and hasattr(self.stream, "capture"):
                if self._graph_batch != count:
                    # trtexec's rule: after a shape change, enqueue once before capturing, so the
                    # context's shape-dependent setup happens outside the graph.
                    self._enqueue(nbytes_in)
                    self.stream.synchronize()
                    self.stream.capture(lambda: self._enqueue(nbytes_in))
                self.stream.launch()
            else:
                self._enqueue(nbytes_in)
            self._graph_batch = count
            self.stream.synchronize()
            outputs = {}
            for name in self.output_names:
                shape = tuple(self.context.get_tensor_shape(name))
                outputs[name] = self.buffers[name].host.reshape(-1)[: int(np.prod(shape))].reshape(shape).copy()
            return outputs

    def close(self) -> None:
        """Free the pinned and device buffers, the stream and the context; idempotent."""
        with self._lock:
            for buffer in self.buffers.values():
                buffer.free()
            self.buffers = {}
            if self.stream is not None:
                self.stream.close()
            self.stream = self.context = self.engine = None


def _open(path: Path, options: BackendOptions, engine: EngineFile) -> TensorRTBackend:
    if options.streams != 1:
        raise RetinaEdgeError("TensorRT engines run one inference at a time here (one execution context); "
                              "streams must be 1", option="streams")
    return TensorRTBackend(engine, use_cuda_graph=options.cuda_graph)


register_backend("tensorrt", factory=_open, file_kind="engine", module="tensorrt", devices=("cuda",),
                 description="TensorRT engines built by retina-edge (NVIDIA GPUs, Jetson)")
