"""TensorRT engine files with our metadata: a small header in front of the serialized plan (no torch).

Layout: ``MAGIC`` | 8-byte little-endian header length | UTF-8 JSON header | plan bytes. The header
holds the ONNX metadata props, the TensorRT version and GPU the plan was built for, the plan's
length and SHA-256, so a truncated, foreign or mismatched file is reported clearly instead of
failing deep inside TensorRT.
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


def check_compatible(engine: EngineFile, *, tensorrt_version: str, device_name: str, source: str) -> None:
    """Refuse a plan built for another TensorRT version or GPU, saying which and what to do.

    Version-compatible plans (built with ``--version-compatible``) only need the same major version.
    """
    built_version = engine.header.get("tensorrt_version", "?")
    version_compatible = engine.header.get("build", {}).get("version_compatible", False)
    same = built_version.split(".")[0] == tensorrt_version.split(".")[0] if version_compatible else built_version == tensorrt_version
    if not same:
        raise RetinaEdgeError(
            f"{source} was built with TensorRT {built_version}, but TensorRT {tensorrt_version} is installed: "
            "engines only run on the TensorRT version that built them; rebuild it with 'retina-edge build' here"
        )
    built_device = engine.header.get("device", {}).get("name")
    hardware_compatible = engine.header.get("build", {}).get("hardware_compatible", False)
    if built_device and built_device != device_name and not hardware_compatible:
        raise RetinaEdgeError(
            f"{source} was built for the GPU '{built_device}', but this is '{device_name}': TensorRT plans are "
            "specific to the GPU model; rebuild it here (or build it hardware-compatible, for Ampere+)",
            option="hardware_compatible",
        )
