"""TensorRT engine files with our metadata: a small header in front of the serialized plan (no torch).

Layout: ``MAGIC`` | 8-byte little-endian header length | UTF-8 JSON header | plan bytes. The header
holds the ONNX metadata props, the TensorRT version and GPU (name, compute capability) the plan was
built for, the plan's length and SHA-256, so a truncated, foreign or mismatched file is reported
clearly instead of failing deep inside TensorRT.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from retina_edge.atomic import atomic_path
from retina_edge.contract import DeploymentMetadata
from retina_edge.errors import RetinaEdgeError
from retina_edge.runtime.tensorrt.trt_releases import HARDWARE_COMPATIBLE_MIN_CC, parse_version, version_compatible_runs

MAGIC = b"RETINA-EDGE-ENGINE\x00\x01"


@dataclass(frozen=True)
class EngineFile:
    """A parsed engine file: ``header`` (dict), the raw TensorRT ``plan`` and where it came from."""

    header: dict
    plan: bytes
    source: str = "engine"

    @property
    def deployment(self) -> DeploymentMetadata:
        """The contract the engine was built with (the ONNX graph's, with the engine's batch range)."""
        return DeploymentMetadata.from_props(self.header.get("metadata", {}), source=self.source)


def write_engine_file(path: str | os.PathLike, plan: bytes, *, metadata: DeploymentMetadata, tensorrt_version: str,
                      device: dict[str, str], build: dict) -> Path:
    """Write ``plan`` with its header, atomically."""
    header = {
        "metadata": metadata.to_props(), "tensorrt_version": tensorrt_version, "device": device, "build": build,
        "plan_bytes": len(plan), "plan_sha256": hashlib.sha256(plan).hexdigest(),
    }
    encoded = json.dumps(header).encode()
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(MAGIC + struct.pack("<Q", len(encoded)) + encoded)
        handle.write(plan)
    return Path(path)


def read_engine_file(path: str | os.PathLike) -> EngineFile:
    """Parse and verify an engine file; clear errors for missing, truncated or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise RetinaEdgeError(f"engine file not found: {path}")
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise RetinaEdgeError(
            f"{path} is not a retina-edge engine (no metadata header): it may be a bare TensorRT plan from "
            "another tool; rebuild it with 'retina-edge build', or run the ONNX model instead"
        )
    offset = len(MAGIC) + 8
    if len(data) < offset:
        raise RetinaEdgeError(f"{path} is truncated (header cut off); rebuild the engine")
    (length,) = struct.unpack("<Q", data[len(MAGIC) : offset])
    try:
        header = json.loads(data[offset : offset + length])
    except ValueError:
        raise RetinaEdgeError(f"{path} is truncated or damaged (unreadable header); rebuild the engine") from None
    plan = data[offset + length :]
    if len(plan) != header.get("plan_bytes") or hashlib.sha256(plan).hexdigest() != header.get("plan_sha256"):
        raise RetinaEdgeError(
            f"{path} is truncated or damaged: plan has {len(plan)} bytes, expected {header.get('plan_bytes')}; rebuild the engine"
        )
    return EngineFile(header, plan, str(path))


def check_compatible(engine: EngineFile, *, tensorrt_version: str, device_name: str, source: str,
                     compute_capability: str | None = None) -> None:
    """Refuse a plan this TensorRT and GPU cannot run, in one line saying why and what to do, before
    TensorRT fails with its generic deserialisation error.

    Version: a plain plan needs the exact TensorRT that built it; a version-compatible one a runtime
    of the same major that is not older, or a cross-major pair NVIDIA supports (10 -> 11).
    GPU: a plain plan needs the GPU model it was built on; a hardware-compatible one (Ampere+)
    needs compute capability 8.0 or newer, checked against ``compute_capability`` (``"8.7"``) when
    the caller knows it. Facts: :mod:`retina_edge.runtime.tensorrt.trt_releases`.
    """
    build = engine.header.get("build", {})
    _check_version(engine.header.get("tensorrt_version", "?"), tensorrt_version, bool(build.get("version_compatible")), source)
    built = engine.header.get("device", {})
    if build.get("hardware_compatible"):
        _check_ampere_plus(built.get("compute_capability"), compute_capability, device_name, source)
        return
    built_device = built.get("name")
    if built_device and built_device != device_name:
        where = f" (compute capability {built['compute_capability']})" if built.get("compute_capability") else ""
        raise RetinaEdgeError(
            f"{source} was built for the GPU '{built_device}'{where}, but this is '{device_name}': TensorRT plans are "
            "specific to the GPU model; rebuild it here (or build it hardware-compatible, for Ampere+)",
            option="hardware_compatible",
        )


def _check_version(built: str, installed: str, version_compatible: bool, source: str) -> None:
    if not version_compatible:
        if built != installed:
            raise RetinaEdgeError(
                f"{source} was built with TensorRT {built}, but TensorRT {installed} is installed: "
                "engines only run on the TensorRT version that built them; rebuild it with 'retina-edge build' here"
            )
        return
    built_version, runtime = parse_version(built), parse_version(installed)
    if version_compatible_runs(built_version, runtime):
        return
    if built_version[0] == runtime[0]:
        raise RetinaEdgeError(
            f"{source} is a version-compatible engine built with TensorRT {built}, newer than the installed "
            f"{installed}: engines from newer releases do not run on older runtimes; install TensorRT {built} or "
            "newer, or rebuild it here"
        )
    raise RetinaEdgeError(
        f"{source} is a version-compatible engine built with TensorRT {built}; TensorRT {installed} cannot run it "
        "(across major versions NVIDIA supports only 8 -> 10 and 10 -> 11); rebuild it here"
    )


def _check_ampere_plus(built: str | None, running: str | None, device_name: str, source: str) -> None:
    minimum = ".".join(map(str, HARDWARE_COMPATIBLE_MIN_CC))
    for where, value in (("was built on", built), ("is running on", running)):
        if value and parse_version(value)[:2] < HARDWARE_COMPATIBLE_MIN_CC:
            gpu = f"'{device_name}', " if where == "is running on" else ""
            raise RetinaEdgeError(
                f"{source} is a hardware-compatible (Ampere+) engine but {where} a GPU of compute capability {value} "
                f"({gpu}before Ampere's {minimum}): hardware-compatible engines need compute capability {minimum} or "
                "newer; build a plain engine for this GPU instead"
            )


def current_gpu() -> dict[str, str]:
    """Name and compute capability (``"8.7"``) of CUDA device 0, as the engine header records them."""
    from retina_edge.runtime.tensorrt.cuda_memory import _cudart, check

    cudart = _cudart()
    if cudart is None:
        import pycuda.autoinit  # noqa: F401
        import pycuda.driver as driver

        device = driver.Device(0)
        major, minor = device.compute_capability()
        return {"name": device.name(), "compute_capability": f"{major}.{minor}"}
    props = check(cudart.cudaGetDeviceProperties(0))
    name = props.name.decode().rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
    return {"name": name, "compute_capability": f"{props.major}.{props.minor}"}
