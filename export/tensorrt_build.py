"""ONNX -> TensorRT engine (TensorRT 10.x and 11.x, named-tensor API), written with our metadata.

The decisions (precision plan, profile shapes) come from :mod:`retina_edge.export.trt_plan`; this
module only drives TensorRT's builder with them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from retina_edge.contract import INPUT_NAME, DeploymentMetadata
from retina_edge.errors import RetinaEdgeError
from retina_edge.export.trt_plan import (
    LEGACY_CALIBRATORS,
    TrtBuildSettings,
    check_dla,
    legacy_calibration_cache,
    plan_precision,
    profile_shapes,
    trt_major_version,
)
from retina_edge.runtime.backends.tensorrt_backend import import_tensorrt
from retina_edge.runtime.tensorrt.engine_file import current_gpu, write_engine_file
from retina_edge.runtime.core.model_file import read_deployment

logger = logging.getLogger(__name__)


def tensorrt_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorrt") is not None


def _cache_calibrator(trt, cache_path: str):  # noqa: ANN001, ANN202
    """A legacy INT8 calibrator that only replays a calibration cache (TensorRT <= 10, deprecated
    since 10.1): the class matching the cache's algorithm, the header rewritten to this version."""
    algorithm, text = legacy_calibration_cache(Path(cache_path).read_text(), trt.__version__)
    data = text.encode()

    class CacheCalibrator(getattr(trt, LEGACY_CALIBRATORS[algorithm])):
        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):  # noqa: ANN001, ANN201
            return None

        def read_calibration_cache(self) -> bytes:
            return data

        def write_calibration_cache(self, cache) -> None:  # noqa: ANN001
            return None

    return CacheCalibrator()


def check_build_request(settings: TrtBuildSettings, graph_precision: str, *, frame_graph: bool = False):  # noqa: ANN201
    """Refuse what this TensorRT cannot build (legacy flags on 11 or on a frame graph, DLA where there
    is none, a missing calibration cache) before any export or calibration; returns the precision
    plan and ``tensorrt``."""
    trt = import_tensorrt()
    plan = plan_precision(trt_major_version(trt.__version__), graph_precision, settings, frame_graph=frame_graph)
    if settings.dla_core is not None:
        check_dla(trt.__version__, graph_precision, settings.legacy_precision)
    if plan.use_calibration_cache and not Path(settings.calibration_cache).is_file():
        raise RetinaEdgeError(f"calibration cache not found: {settings.calibration_cache}")
    return plan, trt


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, settings: TrtBuildSettings, *,
                 metadata: DeploymentMetadata | None = None) -> Path:
    """Parse ``onnx_path``, build a serialized plan per ``settings``, write it with the graph's
    contract (``metadata``, read from the file when the caller does not have it) updated to the
    engine's batch range and precision."""
    metadata = metadata or read_deployment(onnx_path)
    plan, trt = check_build_request(settings, metadata.precision, frame_graph=metadata.frame is not None)
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if plan.strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RetinaEdgeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_bytes)
    config.builder_optimization_level = settings.optimization_level
    if settings.legacy_precision:
        logger.warning("the legacy %s builder flag uses APIs TensorRT deprecated (calibrators since 10.1, FP16/INT8 "
                       "builder flags since 10.12) and removed in 11; prefer an %s graph", settings.legacy_precision,
                       settings.legacy_precision.upper())
    if plan.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    if plan.int8_flag:
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _cache_calibrator(trt, settings.calibration_cache)
    if settings.hardware_compatible:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    if settings.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if settings.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = settings.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, *profile_shapes(settings.batch, metadata.input_shape))
    if config.add_optimization_profile(profile) < 0:  # -1 on failure, no exception
        raise RetinaEdgeError(f"TensorRT refused the optimization profile for batch {settings.batch}")
    timing_cache = _load_timing_cache(config, settings.timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RetinaEdgeError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    if settings.timing_cache:
        from retina_edge.atomic import write_bytes_atomic

        write_bytes_atomic(settings.timing_cache, bytes(timing_cache.serialize()))
    build_info = {"batch": list(settings.batch), "strongly_typed": plan.strongly_typed, "fp16_flag": plan.fp16_flag,
                  "int8_flag": plan.int8_flag, "hardware_compatible": settings.hardware_compatible,
                  "version_compatible": settings.version_compatible, "dla_core": settings.dla_core}
    legacy = settings.legacy_precision
    engine_metadata = metadata.override(batch=settings.batch, precision=legacy,
                                        target="tensorrt" if legacy == "int8" else None)
    return write_engine_file(engine_path, bytes(serialized), metadata=engine_metadata, tensorrt_version=trt.__version__,
                             device=current_gpu(), build=build_info)


def _load_timing_cache(config, path: str | None):  # noqa: ANN001, ANN202
    """A timing cache from ``path`` (reused across builds) or an empty one."""
    data = Path(path).read_bytes() if path and Path(path).is_file() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, ignore_mismatch=False):  # False for a cache of another GPU or version
        logger.warning("the timing cache %s was made on another GPU or TensorRT version; building with a new one", path)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    return cache
