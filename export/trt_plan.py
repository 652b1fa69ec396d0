"""Decisions behind a TensorRT build, as plain data (no tensorrt import; tested everywhere).

TensorRT 11 is strongly typed: the graph's own types (FP16 casts, Q/DQ nodes) decide precision and
the FP16/INT8 builder flags and calibrators no longer exist. TensorRT 10 still has them
(deprecated): for an FP32 graph it can take ``--fp16`` as a flag, or ``--int8`` with a legacy
calibration cache. A graph that already carries precision is built strongly typed on both.
"""

from __future__ import annotations

from dataclasses import dataclass

from retina_edge.contract import check_batch_range
from retina_edge.errors import RetinaEdgeError
from retina_edge.preprocess import PreprocessConfig


@dataclass(frozen=True)
class TrtBuildSettings:
    """What the user asked for; sizes in bytes, ``batch`` is (min, opt, max)."""

    batch: tuple[int, int, int] = (1, 1, 8)
    workspace_bytes: int = 4 << 30
    optimization_level: int = 3
    timing_cache: str | None = None
    hardware_compatible: bool = False
    version_compatible: bool = False
    dla_core: int | None = None
    legacy_precision: str | None = None  # "fp16" or "int8" flag on an FP32 graph (TensorRT <= 10)
    calibration_cache: str | None = None


@dataclass(frozen=True)
class PrecisionPlan:
    strongly_typed: bool
    fp16_flag: bool
    int8_flag: bool
    use_calibration_cache: bool


def plan_precision(trt_major: int, graph_precision: str, settings: TrtBuildSettings) -> PrecisionPlan:
    """How to get the requested precision out of this TensorRT version for this graph."""
    legacy = settings.legacy_precision
    if legacy not in (None, "fp16", "int8"):
        raise RetinaEdgeError(f"unknown legacy precision {legacy!r}; expected fp16 or int8")
    if graph_precision != "fp32":
        if legacy:
            raise RetinaEdgeError(f"the graph is already {graph_precision}: build it as it is, without --legacy-{legacy}")
        return PrecisionPlan(strongly_typed=True, fp16_flag=False, int8_flag=False, use_calibration_cache=False)
    if legacy is None:
        return PrecisionPlan(strongly_typed=trt_major >= 11, fp16_flag=False, int8_flag=False, use_calibration_cache=False)
    if trt_major >= 11:
        raise RetinaEdgeError(
            f"TensorRT {trt_major} removed the FP16/INT8 builder flags and calibrators: put the precision in the "
            f"graph instead ('retina-edge build --{legacy}' makes an {legacy.upper()} ONNX graph, then build that)"
        )
    if legacy == "int8" and not settings.calibration_cache:
        raise RetinaEdgeError("legacy INT8 needs a calibration cache (--calibration-cache), e.g. the .calib.cache "
                              "'retina-edge build --int8' writes")
    return PrecisionPlan(strongly_typed=False, fp16_flag=True, int8_flag=legacy == "int8",
                         use_calibration_cache=legacy == "int8")


def profile_shapes(batch: tuple[int, int, int], preprocess: PreprocessConfig) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) shapes of the ``images`` input for the optimization profile."""
    check_batch_range(batch)
    return tuple((b, 3, preprocess.height, preprocess.width) for b in batch)


def trt_major_version(version: str) -> int:
    """Major version of a TensorRT version string like ``"10.3.0.26"``."""
    try:
        return int(version.split(".")[0])
    except ValueError:
        raise RetinaEdgeError(f"cannot parse TensorRT version {version!r}") from None
