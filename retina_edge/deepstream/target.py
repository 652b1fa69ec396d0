"""The version guard: refuse DeepStream targets that cannot work, warn about ones that may not.

A target names any of the DeepStream, JetPack and TensorRT releases and the Jetson module; an
engine's header adds the TensorRT that built it and its DLA core. Every fact comes from
:mod:`retina_edge.runtime.tensorrt.trt_releases` (with its sources): DeepStream runs TensorRT 10, so a plan
built by TensorRT 11 cannot run there; legacy INT8 calibration is gone from TensorRT 11; DLA exists
only on some modules and in some TensorRT releases.
"""

from __future__ import annotations

from dataclasses import dataclass

from retina_edge.errors import RetinaEdgeError
from retina_edge.runtime.tensorrt.trt_releases import (
    DEEPSTREAM_RELEASES,
    DLA_LAST_10X,
    DLA_MODULES,
    JETSON_MODULES,
    LEGACY_INT8_REMOVED_IN,
    DeepStreamRelease,
    Version,
    deepstream_for_jetpack,
    deepstream_release,
    has_dla,
    parse_version,
    version_compatible_runs,
)


def _text(version: Version) -> str:
    return ".".join(map(str, version))


@dataclass(frozen=True)
class Target:
    """Release strings as users write them (``"7.1"``, ``"6.2"``, ``"10.3"``) and a Jetson module
    (a key of :data:`~retina_edge.runtime.tensorrt.trt_releases.JETSON_MODULES`); any may be ``None``."""

    deepstream: str | None = None
    jetpack: str | None = None
    tensorrt: str | None = None
    module: str | None = None


@dataclass(frozen=True)
class Deployment:
    """What will run: the engine header (``None`` for an ONNX graph nvinfer builds), the DLA core,
    whether a legacy INT8 calibration cache is used, and the graph's precision."""

    engine_header: dict | None = None
    dla_core: int | None = None
    legacy_int8: bool = False
    precision: str = "fp32"


def check_target(target: Target, deployment: Deployment) -> list[str]:
    """Raise :class:`RetinaEdgeError` for a combination that cannot work; return warnings."""
    release = _release(target)
    if target.module is not None:
        _check_module(target.module, release)
    tensorrt = _tensorrt(target, release)
    header = deployment.engine_header
    dla_core = deployment.dla_core
    if dla_core is None and header is not None:
        dla_core = header.get("build", {}).get("dla_core")
    warnings = _check_legacy_int8(tensorrt) if deployment.legacy_int8 else []
    if dla_core is not None:
        _check_dla(target.module, tensorrt)
        if deployment.precision == "fp32" and not deployment.legacy_int8:
            raise RetinaEdgeError("DLA runs FP16 and INT8 only; nvinfer would run an FP32 graph on the GPU through GPU "
                                  "fallback: build an FP16 or INT8 graph with the deepstream tail")
    if header is not None:
        warnings += _check_engine(header, tensorrt, release)
    newest = _newest_tensorrt()
    if tensorrt is not None and tensorrt[0] > newest[0]:
        raise RetinaEdgeError(f"no DeepStream release runs TensorRT {tensorrt[0]} (the newest, "
                              f"{_text(DEEPSTREAM_RELEASES[-1].version)}, runs {_text(newest)}): target TensorRT 10")
    return warnings


def _newest_tensorrt() -> Version:
    return max(r.tensorrt[1] for r in DEEPSTREAM_RELEASES)


def _check_legacy_int8(tensorrt: Version | None) -> list[str]:
    if tensorrt is not None and tensorrt[0] >= LEGACY_INT8_REMOVED_IN:
        raise RetinaEdgeError(f"TensorRT {_text(tensorrt)} removed legacy INT8 calibration: use an INT8 Q/DQ graph "
                              "with the deepstream tail, which needs no calibration file")
    return ["legacy INT8 calibration is deprecated since TensorRT 10.1 and removed in 11; an INT8 Q/DQ graph needs "
            "no calibration file"]


def _release(target: Target) -> DeepStreamRelease | None:
    jetpack = parse_version(target.jetpack) if target.jetpack else None
    if target.deepstream is None:
        return deepstream_for_jetpack(jetpack) if jetpack else None
    release = deepstream_release(parse_version(target.deepstream))
    if jetpack is not None and jetpack[:2] not in release.jetpack:
        raise RetinaEdgeError(f"DeepStream {_text(release.version)} installs on JetPack "
                              f"{' or '.join(map(_text, release.jetpack))}, not {_text(jetpack)} ({release.source})")
    return release


def _check_module(module: str, release: DeepStreamRelease | None) -> None:
    if module not in JETSON_MODULES:
        raise RetinaEdgeError(f"unknown Jetson module {module!r}; expected one of {', '.join(JETSON_MODULES)}")
    family = JETSON_MODULES[module]
    if release is not None and family not in release.platforms:
        raise RetinaEdgeError(f"DeepStream {_text(release.version)} on Jetson supports {' and '.join(release.platforms)}, "
                              f"not {module} ({release.source})")


def _tensorrt(target: Target, release: DeepStreamRelease | None) -> Version | None:
    """The TensorRT the target runs: the one named (checked against the release's), else the release's."""
    if target.tensorrt is None:
        return release.tensorrt[1] if release else None
    tensorrt = parse_version(target.tensorrt)
    if release is not None and not release.tensorrt[0] <= tensorrt[:2] <= release.tensorrt[1]:
        raise RetinaEdgeError(f"DeepStream {_text(release.version)} runs TensorRT {_text(release.tensorrt[0])}, not "
                              f"{_text(tensorrt)} ({release.source})")
    return tensorrt


def _check_engine(header: dict, tensorrt: Version | None, release: DeepStreamRelease | None) -> list[str]:
    built = parse_version(header.get("tensorrt_version", "0"))
    compatible = bool(header.get("build", {}).get("version_compatible"))
    newest = _newest_tensorrt()
    if built[0] > newest[0]:
        raise RetinaEdgeError(f"the engine was built with TensorRT {_text(built)}, but DeepStream runs TensorRT "
                              f"{newest[0]} (up to {_text(newest)}): a newer major's plan does not run on an older "
                              "runtime; give nvinfer the ONNX graph (it builds the engine) or build on the device")
    if tensorrt is None:
        return []
    runtime = tensorrt
    where = f"DeepStream {_text(release.version)}'s " if release else ""
    if compatible and not version_compatible_runs(built, runtime):
        raise RetinaEdgeError(f"the version-compatible engine was built with TensorRT {_text(built)}, newer than "
                              f"{where}TensorRT {_text(runtime)}: engines from newer releases do not run on older runtimes")
    if not compatible and built[:2] != runtime[:2]:
        raise RetinaEdgeError(f"the engine was built with TensorRT {_text(built)}, but {where}TensorRT is "
                              f"{_text(runtime)}: a plain engine runs only on the release that built it; rebuild it "
                              "on the device, or give nvinfer the ONNX graph")
    if not compatible and len(runtime) < 3:
        return [f"a plain engine needs the exact TensorRT release that built it ({_text(built)}); check the device's "
                "with 'dpkg -l | grep nvinfer'"]
    return []


def _check_dla(module: str | None, tensorrt: Version | None) -> None:
    if module is not None and module not in DLA_MODULES:
        raise RetinaEdgeError(f"{module} has no DLA cores (DLA: {', '.join(sorted(DLA_MODULES))}): run on the GPU")
    if tensorrt is not None and not has_dla(tensorrt):
        raise RetinaEdgeError(f"TensorRT {_text(tensorrt)} has no DLA support (TensorRT {_text(DLA_LAST_10X)} was the "
                              "last 10.x with DLA): run on the GPU")
