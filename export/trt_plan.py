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
from retina_edge.runtime.tensorrt.trt_releases import LEGACY_INT8_REMOVED_IN, has_dla


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


def plan_precision(trt_major: int, graph_precision: str, settings: TrtBuildSettings, *,
                   frame_graph: bool = False) -> PrecisionPlan:
    """How to get the requested precision out of this TensorRT version for this graph (``frame_graph``:
    one with the frame steps inside, :mod:`~retina_edge.export.frame_graph`)."""
    legacy = settings.legacy_precision
    if legacy not in (None, "fp16", "int8"):
        raise RetinaEdgeError(f"unknown legacy precision {legacy!r}; expected fp16 or int8")
    if legacy and frame_graph:
        raise RetinaEdgeError(f"the legacy {legacy} builder flag lets TensorRT pick any layer's precision, the frame "
                              f"steps' letterbox and normalisation included: build an {legacy.upper()} graph instead "
                              "(its frame steps stay FP32)", option="legacy_precision")
    if graph_precision != "fp32":
        if legacy:
            raise RetinaEdgeError(f"the graph is already {graph_precision}: build it as it is, without the legacy {legacy} "
                                  "builder flag", option="legacy_precision")
        return PrecisionPlan(strongly_typed=True, fp16_flag=False, int8_flag=False, use_calibration_cache=False)
    if legacy is None:
        return PrecisionPlan(strongly_typed=trt_major >= 11, fp16_flag=False, int8_flag=False, use_calibration_cache=False)
    if trt_major >= LEGACY_INT8_REMOVED_IN:
        raise RetinaEdgeError(
            f"TensorRT {trt_major} removed the FP16/INT8 builder flags and calibrators: put the precision in the "
            f"graph instead (build an {legacy.upper()} ONNX graph, then an engine from that)", option="legacy_precision"
        )
    if legacy == "int8" and not settings.calibration_cache:
        raise RetinaEdgeError("legacy INT8 needs a calibration cache, e.g. the .calib.cache an INT8 build for "
                              "tensorrt writes", option="calibration_cache")
    return PrecisionPlan(strongly_typed=False, fp16_flag=True, int8_flag=legacy == "int8",
                         use_calibration_cache=legacy == "int8")


def profile_shapes(batch: tuple[int, int, int], image_shape: tuple[int, int, int]) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) shapes of the ``images`` input for the optimization profile; ``image_shape``:
    one image's (``DeploymentMetadata.input_shape``: ``(3, H, W)``, or a frame graph's ``(H, W, 3)``)."""
    check_batch_range(batch)
    return tuple((b, *image_shape) for b in batch)


def trt_major_version(version: str) -> int:
    """Major version of a TensorRT version string like ``"10.3.0.26"``."""
    try:
        return int(version.split(".")[0])
    except ValueError:
        raise RetinaEdgeError(f"cannot parse TensorRT version {version!r}") from None


def check_dla(trt_version: str, graph_precision: str, legacy_precision: str | None) -> None:
    """Refuse a DLA build that would not run on DLA: DLA runs FP16/INT8 only (with GPU fallback an
    FP32 graph silently becomes a GPU engine), and only some TensorRT releases have it."""
    version = tuple(int(part) for part in trt_version.split(".")[:3] if part.isdigit())
    if not has_dla(version):
        raise RetinaEdgeError(f"TensorRT {trt_version} has no DLA support (per NVIDIA, 10.7 was the last 10.x with DLA; "
                              "11.4.1, with JetPack 7.2.2, has it again): build for the GPU, without a DLA core", option="dla_core")
    if graph_precision == "fp32" and legacy_precision is None:
        raise RetinaEdgeError("DLA runs FP16 and INT8 only; an FP32 graph would silently run on the GPU through GPU "
                              "fallback: build an FP16 or INT8 graph first (or use the legacy fp16 builder flag on TensorRT <= 10)",
                              option=("precision", "legacy_precision"))


def calibration_header_version(trt_version: str) -> int:
    """The number TensorRT writes in a calibration cache header: major*10000 + minor*100 + patch."""
    major, minor, patch = (int(part) for part in (trt_version.split(".") + ["0", "0"])[:3])
    return major * 10000 + minor * 100 + patch


def legacy_calibration_cache(text: str, trt_version: str) -> tuple[str, str]:
    """(algorithm, cache text) to replay a calibration cache on this TensorRT: the header gets the
    reading version, and the algorithm it names picks the calibrator class (a ``max`` cache must be
    replayed by a MinMax calibrator, not an entropy one)."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("TRT-") or lines[0].count("-") < 2:
        raise RetinaEdgeError("not a TensorRT calibration cache (no TRT-<version>-<algorithm> header)")
    algorithm = lines[0].split("-", 2)[2]
    if algorithm not in LEGACY_CALIBRATORS:
        raise RetinaEdgeError(f"calibration cache algorithm {algorithm!r} is not one of {sorted(LEGACY_CALIBRATORS)}")
    lines[0] = f"TRT-{calibration_header_version(trt_version)}-{algorithm}"
    return algorithm, "\n".join(lines) + "\n"


#: Cache header algorithm -> the TensorRT <= 10 calibrator class that replays it.
LEGACY_CALIBRATORS = {"EntropyCalibration2": "IInt8EntropyCalibrator2", "MinMaxCalibration": "IInt8MinMaxCalibrator"}
