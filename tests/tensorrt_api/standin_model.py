"""Behaviour behind the stand-in ``tensorrt``: a small model of what TensorRT documents.

Networks come from the ONNX file (names, types, shapes with a dynamic batch); a build checks the
optimization profiles, the precision flags against strong typing, the legacy calibrator's cache,
DLA, the timing cache and compatibility modes, then writes a plan (JSON header + the ONNX bytes).
A runtime refuses plans of another version, and version-compatible plans unless host code is
allowed. An execution context checks shapes against the profile and addresses against the CUDA
stand-in's allocations, and queues the inference (ONNX Runtime, on the bytes in "device" memory)
on the stream, so results appear only after a synchronize and a stale or short buffer shows.
Every refusal is logged through the caller's real ``Logger`` and returned as TensorRT does
(``False``, ``-1`` or ``None``), never raised.
"""

from __future__ import annotations

import json
import operator
from dataclasses import dataclass, field


from cuda_standin import CudaModel
from signatures import NotModelled
from standin import StandIn, impl_of, stand_in_class

PLAN_MAGIC = b"STANDIN-TRT-PLAN\0"
ONNX_TYPES = {1: "FLOAT", 10: "HALF", 6: "INT32", 7: "INT64", 9: "BOOL", 2: "UINT8"}
CALIBRATION_NAMES = {"ENTROPY_CALIBRATION_2": "EntropyCalibration2", "MINMAX_CALIBRATION": "MinMaxCalibration"}


@dataclass
class Environment:
    """One test's TensorRT + CUDA world: the real module, the CUDA model, what happened."""

    real: object
    cuda: CudaModel
    cudart: object = None  # the stand-in cuda-python runtime module bound to ``cuda``
    dla_cores: int = 0
    errors: list = field(default_factory=list)
    builds: list = field(default_factory=list)  # the plan header of every successful build

    def wrap(self, real_name: str, impl, **dunders):  # noqa: ANN001, ANN003, ANN201
        return stand_in_class(getattr(self.real, real_name), self.real, dunders=dunders)(impl)

    def error(self, logger, message: str) -> None:  # noqa: ANN001
        self.errors.append(message)
        logger.log(self.real.Logger.ERROR, message)


def _header_version(version: str) -> int:
    major, minor, patch = (int(p) for p in version.split(".")[:3])
    return major * 10000 + minor * 100 + patch


class HostMemory:
    def __init__(self, data: bytes, real) -> None:  # noqa: ANN001
        self.data, self.nbytes, self.dtype = data, len(data), real.DataType.UINT8


def host_memory(env: Environment, data: bytes) -> StandIn:
    return env.wrap("IHostMemory", HostMemory(data, env.real), __bytes__=lambda self: impl_of(self).data)


class Network:
    def __init__(self, env: Environment, flags: int) -> None:
        self.env, self.flags = env, flags
        strongly = 1 << int(env.real.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        self.strongly_typed = bool(flags & strongly)
        self.tensors: list[dict] = []  # {"name", "dtype", "shape", "input"}
        self.onnx = b""

    @property
    def num_inputs(self) -> int:
        return sum(t["input"] for t in self.tensors)

    @property
    def num_outputs(self) -> int:
        return sum(not t["input"] for t in self.tensors)


class ParserError:
    def __init__(self, text: str) -> None:
        self.text = text

    def desc(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text


class Parser:
    def __init__(self, env: Environment, network, logger) -> None:  # noqa: ANN001
        self.env, self.network, self.logger, self.errors = env, impl_of(network), logger, []

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> ParserError:
        return self.errors[index]

    def parse_from_file(self, model: str) -> bool:
        import onnx

        try:
            proto = onnx.load(model)
        except Exception as error:  # noqa: BLE001 - any unreadable file is a parse failure, as for TensorRT
            self.errors.append(ParserError(f"cannot read {model}: {error}"))
            return False
        for value, is_input in [*((v, True) for v in proto.graph.input), *((v, False) for v in proto.graph.output)]:
            tensor = value.type.tensor_type
            shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
            self.network.tensors.append({"name": value.name, "dtype": ONNX_TYPES[tensor.elem_type], "shape": shape,
                                         "input": is_input})
        self.network.onnx = proto.SerializeToString()
        return True


class Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, input: str, min, opt, max) -> None:  # noqa: A002, ANN001
        self.shapes[input] = tuple(tuple(int(d) for d in dims) for dims in (min, opt, max))

    def valid(self) -> bool:
        return all(len(lo) == len(mid) == len(hi) and all(0 <= a <= b <= c for a, b, c in zip(lo, mid, hi))
                   for lo, mid, hi in self.shapes.values())


class TimingCache:
    def __init__(self, env: Environment, version: str, entries: int) -> None:
        self.env, self.version, self.entries = env, version, entries

    def serialize(self) -> StandIn:
        return host_memory(self.env, f"TIMING-CACHE {self.version} {self.entries}".encode())


class Config:
    def __init__(self, env: Environment) -> None:
        real = env.real
        self.env, self.flags, self.pools, self.profiles = env, set(), {}, []
        self.builder_optimization_level = 3
        self.hardware_compatibility_level = real.HardwareCompatibilityLevel.NONE
        self.default_device_type = real.DeviceType.GPU
        self.DLA_core = -1
        self.timing_cache = None
        if hasattr(real.IBuilderConfig, "int8_calibrator"):
            self.int8_calibrator = None

    def set_memory_pool_limit(self, pool, pool_size: int) -> None:  # noqa: ANN001
        self.pools[pool] = pool_size

    def set_flag(self, flag) -> None:  # noqa: ANN001
        self.flags.add(flag)

    def get_flag(self, flag) -> bool:  # noqa: ANN001
        return flag in self.flags

    def add_optimization_profile(self, profile) -> int:  # noqa: ANN001
        profile = impl_of(profile)
        if profile is None or not profile.valid():
            return -1
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, serialized_timing_cache) -> StandIn:  # noqa: ANN001
        data = bytes(serialized_timing_cache)
        if not data:
            return self.env.wrap("ITimingCache", TimingCache(self.env, self.env.real.__version__, 0))
        _, version, entries = data.decode().split()
        return self.env.wrap("ITimingCache", TimingCache(self.env, version, int(entries)))

    def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:  # noqa: ANN001
        cache = impl_of(cache)
        if cache is None or (cache.version != self.env.real.__version__ and not ignore_mismatch):
            return False
        self.timing_cache = cache
        return True


class Builder:
    def __init__(self, env: Environment, logger) -> None:  # noqa: ANN001
        self.env, self.logger = env, logger

    @property
    def num_DLA_cores(self) -> int:  # noqa: N802
        return self.env.dla_cores

    def create_network(self, flags: int = 0) -> StandIn:
        return self.env.wrap("INetworkDefinition", Network(self.env, operator.index(flags)))

    def create_builder_config(self) -> StandIn:
        return self.env.wrap("IBuilderConfig", Config(self.env))

    def create_optimization_profile(self) -> StandIn:
        return self.env.wrap("IOptimizationProfile", Profile())

    def build_serialized_network(self, network, config) -> StandIn | None:  # noqa: ANN001
        network, config = impl_of(network), impl_of(config)
        problems = [*_profile_problems(network, config), *_precision_problems(self.env, network, config),
                    *_dla_problems(self.env, network, config, self.logger)]
        for problem in problems:
            self.env.error(self.logger, problem)
        if problems:
            return None
        real = self.env.real
        header = {
            "version": real.__version__, "tensors": network.tensors, "profiles": [p.shapes for p in config.profiles],
            "strongly_typed": network.strongly_typed, "flags": sorted(f.name for f in config.flags),
            "version_compatible": real.BuilderFlag.VERSION_COMPATIBLE in config.flags,
            "lean_runtime": real.BuilderFlag.EXCLUDE_LEAN_RUNTIME not in config.flags,
            "hardware_compatibility": config.hardware_compatibility_level.name,
            "dla_core": config.DLA_core if config.default_device_type == real.DeviceType.DLA else None,
            "optimization_level": config.builder_optimization_level, "pools": {p.name: v for p, v in config.pools.items()},
            "timing_cache_entries_before": config.timing_cache.entries if config.timing_cache else None,
        }
        if config.timing_cache is not None:
            config.timing_cache.entries += len(network.tensors)  # the tactics this build timed
        self.env.builds.append(header)
        return host_memory(self.env, PLAN_MAGIC + json.dumps(header).encode() + b"\0" + network.onnx)


def _profile_problems(network: Network, config: Config) -> list[str]:
    if not network.tensors:
        return ["the network has no inputs (was the ONNX file parsed?)"]
    dynamic = [t for t in network.tensors if t["input"] and -1 in t["shape"]]
    if dynamic and not config.profiles:
        return ["Network has dynamic or shape inputs, but no optimization profile has been defined."]
    problems = []
    for index, profile in enumerate(config.profiles):
        for tensor in dynamic:
            shapes = profile.shapes.get(tensor["name"])
            if shapes is None:
                problems.append(f"optimization profile {index} has no shape for the input {tensor['name']}")
                continue
            for dims in shapes:
                if len(dims) != len(tensor["shape"]) or any(s not in (-1, d) for s, d in zip(tensor["shape"], dims)):
                    problems.append(f"profile {index} shape {dims} does not fit the input {tensor['name']}{tensor['shape']}")
    return problems


def _graph_precision(network: Network) -> str:
    import onnx

    proto = onnx.load_from_string(network.onnx)
    if any(node.op_type == "QuantizeLinear" for node in proto.graph.node):
        return "int8"
    return "fp16" if any(init.data_type == onnx.TensorProto.FLOAT16 for init in proto.graph.initializer) else "fp32"


def _precision_problems(env: Environment, network: Network, config: Config) -> list[str]:
    real = env.real
    precision_flags = [getattr(real.BuilderFlag, n) for n in ("FP16", "INT8", "BF16", "FP8", "INT4", "FP4")
                       if hasattr(real.BuilderFlag, n)]
    chosen = [flag.name for flag in precision_flags if flag in config.flags]
    if network.strongly_typed and chosen:
        return [f"precision flags {chosen} cannot be set for a strongly typed network (types come from the graph)"]
    if getattr(real.BuilderFlag, "INT8", None) in config.flags and _graph_precision(network) == "fp32":
        return _calibration_problems(env, network, config.int8_calibrator)
    return []


def _calibration_problems(env: Environment, network: Network, calibrator) -> list[str]:  # noqa: ANN001
    if calibrator is None:
        return ["INT8 requested without a calibrator, Q/DQ nodes or dynamic ranges"]
    cache = calibrator.read_calibration_cache()
    header = bytes(cache).split(b"\n")[0].decode() if cache else ""
    expected = f"TRT-{_header_version(env.real.__version__)}-{CALIBRATION_NAMES[calibrator.get_algorithm().name]}"
    if header == expected:
        return []
    # TensorRT ignores a cache of another version or algorithm and calibrates from batches.
    calibrator.get_batch_size()
    if calibrator.get_batch([t["name"] for t in network.tensors if t["input"]]) is None:
        return [f"calibration cache header {header!r} is not {expected!r}, so TensorRT calibrated from batches, "
                "and get_batch returned none: Calibration failure"]
    raise NotModelled("calibrating from batches")


def _dla_problems(env: Environment, network: Network, config: Config, logger) -> list[str]:  # noqa: ANN001
    real = env.real
    if config.default_device_type != real.DeviceType.DLA:
        return []
    if not 0 <= config.DLA_core < env.dla_cores:
        return [f"DLA core {config.DLA_core} requested, but this platform has {env.dla_cores} DLA cores"]
    reduced = _graph_precision(network) != "fp32" or any(
        getattr(real.BuilderFlag, n, None) in config.flags for n in ("FP16", "INT8"))
    if reduced:
        return []
    if real.BuilderFlag.GPU_FALLBACK not in config.flags:
        return ["DLA runs FP16 and INT8 only: no layer of this FP32 network can run on DLA"]
    logger.log(real.Logger.WARNING, "DLA runs FP16 and INT8 only: every layer falls back to the GPU")
    return []
