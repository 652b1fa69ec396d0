"""CUDA buffers, streams and graphs (``runtime/tensorrt/cuda_memory.py``) on a real GPU through cuda-python.

The TensorRT API tier runs these calls against a stand-in of ``cuda.bindings.runtime``; here the
driver runs them: pinned host views of every engine I/O dtype, asynchronous copies on one stream,
and a captured CUDA graph that re-reads the pinned input on every launch (what the TensorRT
backend's ``cuda_graph=True`` relies on). Skipped where no GPU is visible.
"""

from __future__ import annotations

import numpy as np
import pytest

from retina_edge.runtime.tensorrt.cuda_memory import CudaStream, HostDeviceBuffer, _cudart, check


def _gpu_count() -> int:
    cudart = _cudart()
    if cudart is None:
        return 0
    try:
        error, count = cudart.cudaGetDeviceCount()
    except Exception:  # noqa: BLE001 - no driver library at all
        return 0
    return count if error == cudart.cudaError_t.cudaSuccess else 0


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_gpu_count() == 0, reason="no CUDA GPU visible to cuda-python")]


def device_copy(source: HostDeviceBuffer, target: HostDeviceBuffer, stream: CudaStream, nbytes: int) -> None:
    """What an engine's ``execute_async_v3`` stands for here: device work on the stream."""
    cudart = _cudart()
    kind = cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice
    check(cudart.cudaMemcpyAsync(target.device, source.device, nbytes, kind, stream.handle))


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32, np.int64, np.bool_])
def test_round_trip_through_the_device(dtype):
    stream = CudaStream()
    source, target = HostDeviceBuffer((2, 3, 5), dtype), HostDeviceBuffer((2, 3, 5), dtype)
    try:
        source.host[...] = np.arange(30).reshape(2, 3, 5) % 7
        target.host[...] = 0
        source.to_device(stream)
        device_copy(source, target, stream, source.nbytes)
        target.to_host(stream)
        stream.synchronize()
        np.testing.assert_array_equal(target.host, source.host)
    finally:
        source.free(), target.free(), stream.close()


def test_a_captured_graph_rereads_the_pinned_input_on_every_launch():
    stream = CudaStream()
    source, target = HostDeviceBuffer((4, 8), np.float32), HostDeviceBuffer((4, 8), np.float32)
    rows = 2 * 8 * 4  # bytes of two rows: a batch of 2 in a buffer sized for 4

    def enqueue() -> None:
        source.to_device(stream, rows)
        device_copy(source, target, stream, rows)
        target.to_host(stream, rows)

    try:
        target.host[...] = -1
        source.host[...] = 1
        stream.capture(enqueue)
        for value in (2.0, 3.0):  # the host array changes between launches, as run() writes each batch
            source.host[...] = value
            stream.launch()
            stream.synchronize()
            np.testing.assert_array_equal(target.host[:2], value)
            np.testing.assert_array_equal(target.host[2:], -1)  # only the captured byte count moved
        stream.capture(lambda: (source.to_device(stream), device_copy(source, target, stream, source.nbytes),
                                target.to_host(stream)))  # another batch size: the old graph is replaced
        source.host[...] = 4
        stream.launch()
        stream.synchronize()
        np.testing.assert_array_equal(target.host, 4)
    finally:
        source.free(), target.free(), stream.close()


def test_free_and_close_are_idempotent():
    stream, buffer = CudaStream(), HostDeviceBuffer((3,), np.float32)
    buffer.free()
    buffer.free()
    stream.close()
    stream.close()
