"""Runtime side of the behaviour model: plans, engines and execution contexts (see :mod:`standin_model`)."""

from __future__ import annotations

import json
import operator

import numpy as np

from standin_model import PLAN_MAGIC, Builder, Environment, Parser
from signatures import NotModelled
from standin import StandIn, factory, make_module


class Runtime:
    def __init__(self, env: Environment, logger) -> None:  # noqa: ANN001
        self.env, self.logger = env, logger
        self.engine_host_code_allowed = False
        self.DLA_core = -1

    def deserialize_cuda_engine(self, serialized_engine=None, stream_reader=None) -> StandIn | None:  # noqa: ANN001
        if stream_reader is not None:
            raise NotModelled("deserializing from an IStreamReader")
        data = bytes(serialized_engine)
        version = self.env.real.__version__
        if not data.startswith(PLAN_MAGIC):
            self.env.error(self.logger, "Serialization assertion failed: the magic tag does not match (not a plan)")
            return None
        encoded, _, onnx = data[len(PLAN_MAGIC):].partition(b"\0")
        header = json.loads(encoded)
        if header["version_compatible"] and header["lean_runtime"] and not self.engine_host_code_allowed:
            self.env.error(self.logger, "this version-compatible plan embeds the lean runtime (host code): set "
                                        "IRuntime.engine_host_code_allowed = True to deserialize it")
            return None
        same = header["version"].split(".")[0] == version.split(".")[0] if header["version_compatible"] else header["version"] == version
        if not same:
            self.env.error(self.logger, f"The engine plan file is not compatible with this version of TensorRT, "
                                        f"expecting library version {version} got {header['version']}")
            return None
        return self.env.wrap("ICudaEngine", Engine(self.env, header, onnx, self.DLA_core))


class Engine:
    def __init__(self, env: Environment, header: dict, onnx: bytes, dla_core: int) -> None:
        self.env, self.header, self.onnx, self.runtime_dla_core = env, header, onnx, dla_core
        self.tensors = {t["name"]: t for t in header["tensors"]}
        self.names = [t["name"] for t in header["tensors"]]
        self.num_io_tensors = len(self.names)
        self.num_optimization_profiles = len(header["profiles"])
        self._session = None

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str):  # noqa: ANN201
        modes = self.env.real.TensorIOMode
        if name not in self.tensors:
            return modes.NONE
        return modes.INPUT if self.tensors[name]["input"] else modes.OUTPUT

    def get_tensor_dtype(self, name: str):  # noqa: ANN201
        return getattr(self.env.real.DataType, self.tensors[name]["dtype"])

    def get_tensor_shape(self, name: str):  # noqa: ANN201
        return self.env.real.Dims(self.tensors[name]["shape"])

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list:
        shapes = self.header["profiles"][profile_index][name]
        return [self.env.real.Dims(tuple(dims)) for dims in shapes]

    def create_execution_context(self, strategy=None) -> StandIn:  # noqa: ANN001
        return self.env.wrap("IExecutionContext", Context(self))

    def session(self):  # noqa: ANN201
        if self._session is None:
            import onnxruntime

            self._session = onnxruntime.InferenceSession(self.onnx, providers=["CPUExecutionProvider"])
        return self._session


class Context:
    def __init__(self, engine: Engine) -> None:
        self.engine, self.env = engine, engine.env
        self.shapes: dict[str, tuple] = {}
        self.addresses: dict[str, int] = {}
        self.needs_setup = True  # the first enqueue after a shape change does setup work

    def set_input_shape(self, name: str, shape) -> bool:  # noqa: ANN001
        tensor = self.engine.tensors.get(name)
        shape = tuple(int(d) for d in shape)
        low, _, high = self.engine.header["profiles"][0].get(name, (shape, shape, shape))
        fits = tensor is not None and tensor["input"] and len(shape) == len(tensor["shape"]) and all(
            lo <= d <= hi for lo, d, hi in zip(low, shape, high))
        if not fits:
            self.env.errors.append(f"set_input_shape({name}, {shape}) outside the profile {low}..{high}")
            return False
        self.shapes[name] = shape
        self.needs_setup = True
        return True

    def _shape(self, name: str) -> tuple:
        tensor = self.engine.tensors[name]
        if tensor["input"]:
            return self.shapes.get(name, tensor["shape"])
        batch = next(iter(self.shapes.values()), (-1,))[0]
        return tuple(batch if d == -1 else d for d in tensor["shape"])

    def get_tensor_shape(self, name: str):  # noqa: ANN201
        return self.env.real.Dims(self._shape(name))

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if name not in self.engine.tensors:
            return False
        self.addresses[name] = operator.index(memory)
        return True

    def get_tensor_address(self, name: str) -> int:
        return self.addresses.get(name, 0)

    def execute_async_v3(self, stream_handle: int) -> bool:
        cuda, names = self.env.cuda, self.engine.names
        missing = [n for n in names if self.engine.tensors[n]["input"] and n not in self.shapes]
        unbound = [n for n in names if not self.addresses.get(n)]
        if missing or unbound:
            self.env.errors.append(f"enqueue with input shapes unset {missing} or addresses unset {unbound}")
            return False
        if cuda.is_capturing(stream_handle) and self.needs_setup:
            cuda.invalidate_capture(stream_handle)
            self.env.errors.append("enqueue captured right after an input shape change: its setup broke the capture")
            return False
        regions = {n: cuda.region(self.addresses[n], self._nbytes(n), device=True) for n in names}
        shapes = {n: self._shape(n) for n in names}
        cuda.enqueue(stream_handle, lambda: self._compute(regions, shapes))
        self.needs_setup = False
        return True

    def _dtype(self, name: str) -> np.dtype:
        return np.dtype(self.env.real.nptype(self.engine.get_tensor_dtype(name)))

    def _nbytes(self, name: str) -> int:
        return int(np.prod(self._shape(name))) * self._dtype(name).itemsize

    def _compute(self, regions: dict, shapes: dict) -> None:
        inputs = {n: np.frombuffer(regions[n], self._dtype(n)).reshape(shapes[n])
                  for n in regions if self.engine.tensors[n]["input"]}
        session = self.engine.session()
        outputs = session.run(None, inputs)
        for output, value in zip(session.get_outputs(), outputs):
            expected = shapes[output.name]
            assert value.shape == expected, f"{output.name}: the graph gave {value.shape}, the engine declares {expected}"
            regions[output.name][:] = np.ascontiguousarray(value, self._dtype(output.name)).tobytes()


def make_tensorrt(env: Environment):  # noqa: ANN201
    """The stand-in ``tensorrt`` module over ``env.real``."""
    real = env.real
    return make_module(real, {
        "Builder": factory(real.Builder, real, lambda logger: Builder(env, logger)),
        "Runtime": factory(real.Runtime, real, lambda logger: Runtime(env, logger)),
        "OnnxParser": factory(real.OnnxParser, real, lambda network, logger: Parser(env, network, logger)),
    })
