"""A stand-in ``cuda.bindings.runtime`` bound to the real cuda-python functions' signatures.

cuda-python imports here but every call fails without a driver. Each stand-in function binds its
arguments to the real function's ``inspect.signature``, checks the types its docstring declares
(``size_t count``, ``kind: cudaMemcpyKind``), and returns the real ``(cudaError_t, value)`` tuples
with the real handle types. Memory is host memory (``ctypes``), tracked per allocation, so copies
out of bounds or between the wrong kinds of memory fail. Work on a stream is queued and runs at
``cudaStreamSynchronize``; between ``cudaStreamBeginCapture`` and ``cudaStreamEndCapture`` it is
recorded into a graph that ``cudaGraphLaunch`` queues again. Nothing here touches a GPU.
"""

from __future__ import annotations

import ctypes
import inspect
import itertools
import operator
import re
import types

from signatures import NotModelled

INTEGER_TYPES = ("size_t", "int", "unsigned int", "unsigned long long", "long long")


class CudaModel:
    """Allocations, streams and graphs of one simulated device."""

    def __init__(self, real, *, device_name: str = "NVIDIA Orin", compute_capability: tuple[int, int] = (8, 7)) -> None:  # noqa: ANN001
        self.real = real
        self.device_name = device_name
        self.compute_capability = compute_capability
        self.host, self.device = {}, {}  # address -> ctypes buffer
        self.streams: dict[int, list] = {}  # handle -> queued operations
        self.capturing: dict[int, list] = {}  # handle -> operations recorded into a graph
        self.invalid_capture: set[int] = set()
        self.graphs: dict[int, list] = {}
        self.graph_execs: dict[int, list] = {}
        self.launches = 0
        self._ids = itertools.count(0x1000)

    # --- what the TensorRT stand-in uses -------------------------------------------------------
    def enqueue(self, stream, operation) -> None:  # noqa: ANN001
        handle = operator.index(stream)
        if handle in self.capturing:
            self.capturing[handle].append(operation)
        elif handle in self.streams:
            self.streams[handle].append(operation)
        else:
            raise AssertionError(f"no such stream {handle:#x}")

    def invalidate_capture(self, stream) -> None:  # noqa: ANN001
        self.invalid_capture.add(operator.index(stream))

    def is_capturing(self, stream) -> bool:  # noqa: ANN001
        return operator.index(stream) in self.capturing

    def region(self, address: int, nbytes: int, *, device: bool) -> memoryview:
        """The bytes at ``address``, which must lie inside one allocation of that kind."""
        pool = self.device if device else self.host
        for start, buffer in pool.items():
            if start <= address and address + nbytes <= start + ctypes.sizeof(buffer):
                return memoryview(buffer).cast("B")[address - start : address - start + nbytes]
        kind = "device" if device else "pinned host"
        raise AssertionError(f"{nbytes} bytes at {address:#x} are not inside one {kind} allocation")

    # --- the cudart functions ----------------------------------------------------------------
    def _ok(self, *values):  # noqa: ANN002, ANN202
        return (self.real.cudaError_t.cudaSuccess, *values)

    def _error(self, name: str):  # noqa: ANN202
        return (getattr(self.real.cudaError_t, name), None)

    def _allocate(self, pool: dict, size: int):  # noqa: ANN202
        buffer = ctypes.create_string_buffer(max(1, size))
        pool[ctypes.addressof(buffer)] = buffer
        return self._ok(ctypes.addressof(buffer))

    def cudaMalloc(self, size):  # noqa: ANN001, ANN201, N802
        return self._allocate(self.device, size)

    def cudaMallocHost(self, size):  # noqa: ANN001, ANN201, N802
        return self._allocate(self.host, size)

    def cudaFree(self, devPtr):  # noqa: ANN001, ANN201, N802, N803
        return self._ok() if self.device.pop(operator.index(devPtr), None) is not None else self._error("cudaErrorInvalidValue")

    def cudaFreeHost(self, ptr):  # noqa: ANN001, ANN201, N802
        return self._ok() if self.host.pop(operator.index(ptr), None) is not None else self._error("cudaErrorInvalidValue")

    def cudaStreamCreate(self):  # noqa: ANN201, N802
        handle = next(self._ids)
        self.streams[handle] = []
        return self._ok(self.real.cudaStream_t(handle))

    def cudaStreamDestroy(self, stream):  # noqa: ANN001, ANN201, N802
        return self._ok() if self.streams.pop(operator.index(stream), None) is not None else self._error("cudaErrorInvalidResourceHandle")

    def cudaStreamSynchronize(self, stream):  # noqa: ANN001, ANN201, N802
        handle = operator.index(stream)
        if handle in self.capturing:
            return self._error("cudaErrorStreamCaptureUnsupported")
        operations, self.streams[handle] = self.streams[handle], []
        for operation in operations:
            operation()
        return self._ok()

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):  # noqa: ANN001, ANN201, N802
        kinds = self.real.cudaMemcpyKind
        if kind not in (kinds.cudaMemcpyHostToDevice, kinds.cudaMemcpyDeviceToHost):
            raise NotModelled(f"cudaMemcpyAsync kind {kind}")
        to_device = kind == kinds.cudaMemcpyHostToDevice
        target = self.region(operator.index(dst), count, device=to_device)
        source = self.region(operator.index(src), count, device=not to_device)
        self.enqueue(stream, lambda: target.__setitem__(slice(None), source))
        return self._ok()

    def cudaStreamBeginCapture(self, stream, mode):  # noqa: ANN001, ANN201, N802
        handle = operator.index(stream)
        if self.streams.get(handle):
            raise AssertionError("capture began with work still queued on the stream")
        self.capturing[handle] = []
        return self._ok()

    def cudaStreamEndCapture(self, stream):  # noqa: ANN001, ANN201, N802
        handle = operator.index(stream)
        operations = self.capturing.pop(handle)
        if handle in self.invalid_capture:
            self.invalid_capture.discard(handle)
            return self._error("cudaErrorStreamCaptureInvalidated")
        graph = next(self._ids)
        self.graphs[graph] = operations
        return self._ok(self.real.cudaGraph_t(graph))

    def cudaGraphInstantiate(self, graph, flags):  # noqa: ANN001, ANN201, N802
        executable = next(self._ids)
        self.graph_execs[executable] = list(self.graphs[operator.index(graph)])
        return self._ok(self.real.cudaGraphExec_t(executable))

    def cudaGraphLaunch(self, graphExec, stream):  # noqa: ANN001, ANN201, N802, N803
        operations = self.graph_execs.get(operator.index(graphExec))
        if operations is None:
            return self._error("cudaErrorInvalidValue")
        self.launches += 1
        for operation in operations:
            self.enqueue(stream, operation)
        return self._ok()

    def cudaGraphExecDestroy(self, graphExec):  # noqa: ANN001, ANN201, N802, N803
        return self._ok() if self.graph_execs.pop(operator.index(graphExec), None) is not None else self._error("cudaErrorInvalidValue")

    def cudaGraphDestroy(self, graph):  # noqa: ANN001, ANN201, N802
        return self._ok() if self.graphs.pop(operator.index(graph), None) is not None else self._error("cudaErrorInvalidValue")

    def cudaGetDeviceProperties(self, device):  # noqa: ANN001, ANN201, N802
        properties = self.real.cudaDeviceProp()
        properties.name = self.device_name.encode().ljust(256, b"\0")
        properties.major, properties.minor = self.compute_capability
        return self._ok(properties)

    def cudaGetErrorName(self, error):  # noqa: ANN001, ANN201, N802
        return self._ok(error.name.encode())


def _declared_types(function) -> dict[str, str]:  # noqa: ANN001
    """Parameter -> C type from the docstring's first line, e.g. ``cudaMalloc(size_t size)``."""
    first = (function.__doc__ or "").strip().splitlines()[0]
    declared = {}
    for part in first[first.index("(") + 1 : first.rindex(")")].split(","):
        part = part.strip()
        if ":" in part:
            name, annotation = (s.strip() for s in part.split(":"))
            declared[name] = annotation
        elif " " in part:
            ctype, name = part.rsplit(" ", 1)
            declared[name] = ctype
    return declared


def _checked(real_function, behaviour, real):  # noqa: ANN001, ANN202
    signature = inspect.signature(real_function)
    declared = _declared_types(real_function)

    def call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        arguments = signature.bind(*args, **kwargs).arguments  # TypeError as for the real function
        for name, value in arguments.items():
            ctype = declared.get(name)
            if ctype in INTEGER_TYPES and (isinstance(value, float) or not hasattr(value, "__index__")):
                raise TypeError(f"{real_function.__name__}: {name} must be an integer ({ctype}), got {value!r}")
            enum = getattr(real, ctype, None) if ctype and re.fullmatch(r"cuda\w+", ctype) else None
            if enum is not None and not isinstance(value, enum):
                raise TypeError(f"{real_function.__name__}: {name} must be {ctype}, got {value!r}")
        return behaviour(**arguments)

    call.__name__ = real_function.__name__
    return call


def make_cudart(real, model: CudaModel) -> types.ModuleType:  # noqa: ANN001
    """The stand-in module: the modelled functions bound to the real signatures; the real module's
    enums and types; anything else the real module has is :class:`NotModelled`."""
    module = types.ModuleType("cuda.bindings.runtime")
    for name in dir(model):
        if name.startswith("cuda") and callable(getattr(model, name)):
            setattr(module, name, _checked(getattr(real, name), getattr(model, name), real))

    def fallback(name: str):  # noqa: ANN202
        value = getattr(real, name)
        if callable(value) and not isinstance(value, type):
            raise NotModelled(f"cudart.{name} exists in cuda-python but the stand-in does not model it")
        return value

    module.__getattr__ = fallback
    return module
