"""CUDA buffers and streams for the TensorRT backend through ``cuda-python`` (``cuda.bindings``),
the binding NVIDIA's own TensorRT samples use; pycuda is accepted where it is installed instead.

Pinned host buffers are exposed as NumPy arrays; copies are asynchronous on one stream.
"""

from __future__ import annotations

import ctypes

import numpy as np

from retina_edge.errors import MissingDependencyError, RetinaEdgeError
from retina_edge.optional import install_hint


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            return None
    return cudart


def cuda_api() -> str:
    """``"cuda-python"`` or ``"pycuda"``, whichever is installed (cuda-python preferred)."""
    if _cudart() is not None:
        return "cuda-python"
    try:
        import pycuda.driver  # noqa: F401
    except ImportError:
        raise MissingDependencyError("cuda-python", "the TensorRT backend", install_hint("cuda")) from None
    return "pycuda"


def check(result):  # noqa: ANN001, ANN201
    """Unpack a cuda-python ``(error, *values)`` tuple, raising on a CUDA error."""
    error, *values = result
    cudart = _cudart()
    if error != cudart.cudaError_t.cudaSuccess:
        name = cudart.cudaGetErrorName(error)[1]
        raise RetinaEdgeError(f"CUDA error {name.decode() if isinstance(name, bytes) else name}")
    return values[0] if len(values) == 1 else tuple(values)


class CudaStream:
    """A CUDA stream with optional CUDA-graph capture of one enqueue function."""

    def __init__(self) -> None:
        self.cudart = _cudart()
        self.handle = check(self.cudart.cudaStreamCreate())
        self._graph = self._graph_exec = None

    def synchronize(self) -> None:
        check(self.cudart.cudaStreamSynchronize(self.handle))

    def capture(self, enqueue) -> None:  # noqa: ANN001
        """Record ``enqueue()`` (copies + execute) into a CUDA graph replayed by :meth:`launch`; a
        graph captured before (another batch size) is destroyed first."""
        cudart = self.cudart
        self._destroy_graph()
        check(cudart.cudaStreamBeginCapture(self.handle, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal))
        enqueue()
        self._graph = check(cudart.cudaStreamEndCapture(self.handle))
        self._graph_exec = check(cudart.cudaGraphInstantiate(self._graph, 0))

    def _destroy_graph(self) -> None:
        if self._graph_exec is not None:
            check(self.cudart.cudaGraphExecDestroy(self._graph_exec))
            check(self.cudart.cudaGraphDestroy(self._graph))
            self._graph_exec = self._graph = None

    def launch(self) -> None:
        check(self.cudart.cudaGraphLaunch(self._graph_exec, self.handle))

    def close(self) -> None:
        if self.handle is not None:
            self._destroy_graph()
            check(self.cudart.cudaStreamDestroy(self.handle))
            self.handle = None


def pinned_array(address: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A NumPy view of ``shape``/``dtype`` on host memory at ``address``, through raw bytes: NumPy
    dtypes without a ctypes twin (float16, the I/O of FP16 engines) work too."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    raw = (ctypes.c_ubyte * (max(1, count) * dtype.itemsize)).from_address(int(address))
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)


class HostDeviceBuffer:
    """A pinned host array and a device allocation of the same size (``shape``, ``dtype``)."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.cudart = _cudart()
        dtype = np.dtype(dtype)
        self.nbytes = max(1, int(np.prod(shape))) * dtype.itemsize
        host_ptr = check(self.cudart.cudaMallocHost(self.nbytes))
        self.host = pinned_array(host_ptr, shape, dtype)
        self._host_ptr = host_ptr
        self.device = check(self.cudart.cudaMalloc(self.nbytes))

    def to_device(self, stream: CudaStream, nbytes: int | None = None) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        check(self.cudart.cudaMemcpyAsync(self.device, self._host_ptr, nbytes or self.nbytes, kind, stream.handle))

    def to_host(self, stream: CudaStream, nbytes: int | None = None) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        check(self.cudart.cudaMemcpyAsync(self._host_ptr, self.device, nbytes or self.nbytes, kind, stream.handle))

    def free(self) -> None:
        if self.device is not None:
            check(self.cudart.cudaFree(self.device))
            check(self.cudart.cudaFreeHost(self._host_ptr))
            self.device = None


class PyCudaStream:
    """pycuda twin of :class:`CudaStream` (no graph capture)."""

    def __init__(self) -> None:
        import pycuda.autoinit  # noqa: F401 - creates the context
        import pycuda.driver as driver

        self.stream = driver.Stream()
        self.handle = self.stream.handle

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        self.stream = None


class PyCudaBuffer:
    """pycuda twin of :class:`HostDeviceBuffer`."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        import pycuda.driver as driver

        self.driver = driver
        self.host = driver.pagelocked_empty(shape, np.dtype(dtype))
        self.nbytes = self.host.nbytes
        self._allocation = driver.mem_alloc(max(1, self.nbytes))
        self.device = int(self._allocation)

    def to_device(self, stream: PyCudaStream, nbytes: int | None = None) -> None:
        self.driver.memcpy_htod_async(self._allocation, self.host, stream.stream)

    def to_host(self, stream: PyCudaStream, nbytes: int | None = None) -> None:
        self.driver.memcpy_dtoh_async(self.host, self._allocation, stream.stream)

    def free(self) -> None:
        self._allocation.free()


def make_stream_and_allocator():  # noqa: ANN201
    """(stream, buffer class) for whichever CUDA binding is installed."""
    if cuda_api() == "cuda-python":
        return CudaStream(), HostDeviceBuffer
    return PyCudaStream(), PyCudaBuffer
