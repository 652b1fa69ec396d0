"""Facts about TensorRT, JetPack and DeepStream releases, in one table, each with its source (no imports).

Every check that depends on a release (engine compatibility in :mod:`.engine_file`, DLA and legacy
INT8 in :mod:`retina_edge.export.trt_plan`, the DeepStream target guard in
:mod:`retina_edge.deepstream.target`) reads these values; none keeps a copy. Versions are tuples
``(major, minor[, patch])``; a range ``(first, last)`` includes both ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from retina_edge.errors import RetinaEdgeError

Version = tuple[int, ...]

#: DLA: 10.7 was the last 10.x with DLA; DLA is back from 11.4.1, on Jetson AGX Orin with JetPack 7.2.2+
#: only (none in 11.0 to 11.3; Thor has no DLA). Sources: TensorRT 11.3.0 "Strongly Typed Networks
#: for DLA" and 11.4.1 "Migrating TensorRT from 10.x to 11.x on Jetson/JetPack",
#: https://docs.nvidia.com/deeplearning/tensorrt/11.4.1/api/migration/tensorrt-10x-to-11x-jetson.html
DLA_LAST_10X: Version = (10, 7)
DLA_FROM_11X: Version = (11, 4, 1)

#: TensorRT 11 removed the FP16/INT8 builder flags and the INT8 calibrators (implicit quantization):
#: a legacy calibration cache cannot be used from this major on. Source: TensorRT 11 migration guide,
#: https://docs.nvidia.com/deeplearning/tensorrt/11.4.0/api/migration-guide.html
LEGACY_INT8_REMOVED_IN = 11

#: Version-compatible plans: within a major, a plan runs on the release that built it and later ones
#: ("engines built with newer versions do not work with older runtimes"); across majors only these
#: (built, runtime) pairs. Sources: "Engine Compatibility",
#: https://docs.nvidia.com/deeplearning/tensorrt/11.1.0/inference-library/engine-compatibility.html,
#: and the 11.4.1 support matrix ("TensorRT 10 version-compatible engines can run with a TensorRT 11
#: runtime, and TensorRT 8 version-compatible engines can run with a TensorRT 10 runtime"),
#: https://docs.nvidia.com/deeplearning/tensorrt/11.4.1/getting-started/support-matrix.html
VERSION_COMPATIBLE_ACROSS_MAJORS = frozenset({(8, 10), (10, 11)})

#: Hardware-compatible plans (``HardwareCompatibilityLevel.AMPERE_PLUS``) are built and run on
#: compute capability 8.0 (Ampere) and newer. Source: TensorRT "Hardware Compatibility",
#: https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/advanced.html
HARDWARE_COMPATIBLE_MIN_CC: Version = (8, 0)


@dataclass(frozen=True)
class DeepStreamRelease:
    """A DeepStream release on Jetson: the JetPack releases it installs on, the TensorRT those ship
    (``(first, last)``), the Jetson families it supports, and the page that says so."""

    version: Version
    jetpack: tuple[Version, ...]
    tensorrt: tuple[Version, Version]
    platforms: tuple[str, ...]
    source: str


#: DeepStream is still on TensorRT 10 in every release below.
DEEPSTREAM_RELEASES = (
    DeepStreamRelease((7, 1), ((6, 1), (6, 2)), ((10, 3), (10, 3)), ("orin",),
                      "https://docs.nvidia.com/metropolis/deepstream/7.1/text/DS_Installation.html (JetPack 6.1 ships "
                      "TensorRT 10.3: https://docs.nvidia.com/jetson/jetpack/release-notes/index.html)"),
    DeepStreamRelease((8, 0), ((7, 0),), ((10, 13), (10, 13)), ("thor",),
                      "https://docs.nvidia.com/metropolis/deepstream/8.0/text/DS_Installation.html"),
    DeepStreamRelease((9, 0), ((7, 1),), ((10, 14), (10, 14)), ("thor",),
                      "https://docs.nvidia.com/metropolis/deepstream/9.0/text/DS_Installation.html (TensorRT 10.14.1.48)"),
    DeepStreamRelease((9, 1), ((7, 2),), ((10, 16), (10, 16)), ("orin", "thor"),
                      "https://docs.nvidia.com/metropolis/deepstream/9.1/text/DS_Installation.html (JetPack 7.2 GA, L4T 39.2)"),
    DeepStreamRelease((9, 2), ((7, 2),), ((10, 16), (10, 16)), ("orin", "thor"),
                      "https://docs.nvidia.com/deepstream/text/DS_Migration_guide (TensorRT 10.16.1.7 for Jetson)"),
)

#: Jetson modules with DLA cores. Orin Nano has none and Thor has none (TensorRT 11.4.1 Jetson page
#: above: "Jetson Thor has no DLA"; Orin Nano: https://developer.nvidia.com/embedded/jetson-modules).
DLA_MODULES = frozenset({"agx-orin", "orin-nx"})
JETSON_MODULES = {"agx-orin": "orin", "orin-nx": "orin", "orin-nano": "orin", "agx-thor": "thor", "t5000": "thor",
                  "t4000": "thor"}


def parse_version(text: str) -> Version:
    """``"10.3.0.26"`` -> ``(10, 3, 0, 26)``; a clear error for anything else."""
    try:
        parts = tuple(int(part) for part in str(text).strip().split("."))
    except ValueError:
        parts = ()
    if not parts:
        raise RetinaEdgeError(f"cannot read the release {text!r}: expected numbers like 10.3 or 7.1")
    return parts


def has_dla(tensorrt: Version) -> bool:
    """Whether this TensorRT release has DLA support at all (see :data:`DLA_LAST_10X`)."""
    return not (DLA_LAST_10X < tensorrt[:2] and tensorrt[:3] < DLA_FROM_11X)


def version_compatible_runs(built: Version, runtime: Version) -> bool:
    """Whether a version-compatible plan built by TensorRT ``built`` runs on ``runtime`` (compared
    as precisely as ``runtime`` is known: ``(10, 3)`` takes any 10.3.x plan)."""
    if built[0] == runtime[0]:
        digits = min(3, len(runtime))
        return built[:digits] <= runtime[:digits]
    return (built[0], runtime[0]) in VERSION_COMPATIBLE_ACROSS_MAJORS


def deepstream_release(version: Version) -> DeepStreamRelease:
    """The table row of a DeepStream release (major.minor), or a clear error naming the known ones."""
    for release in DEEPSTREAM_RELEASES:
        if release.version == version[:2]:
            return release
    known = ", ".join(".".join(map(str, r.version)) for r in DEEPSTREAM_RELEASES)
    raise RetinaEdgeError(f"DeepStream {'.'.join(map(str, version))} is not in retina-edge's release table ({known})")


def deepstream_for_jetpack(jetpack: Version) -> DeepStreamRelease:
    """The newest DeepStream release for a JetPack release (major.minor)."""
    matches = [r for r in DEEPSTREAM_RELEASES if jetpack[:2] in r.jetpack]
    if not matches:
        known = ", ".join(sorted({".".join(map(str, j)) for r in DEEPSTREAM_RELEASES for j in r.jetpack}))
        raise RetinaEdgeError(f"JetPack {'.'.join(map(str, jetpack))} has no DeepStream release in retina-edge's "
                              f"table (JetPack {known})")
    return matches[-1]
