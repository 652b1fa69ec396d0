"""The real TensorRT Python bindings, loaded over stub native libraries.

``tensorrt-cu12-bindings`` wheels hold NVIDIA's pybind11 module (``tensorrt_bindings/tensorrt.so``);
it links against ``libnvinfer.so.N``, ``libnvinfer_plugin.so.N`` and ``libnvonnxparser.so.N``, of
which it only needs a handful of factory symbols at load time. We compile libraries with those
sonames that define every strong undefined symbol nothing else in this process provides, each
returning NULL, and load them before the module: real enums, classes, properties and signatures,
but every factory (``Builder``, ``Runtime``, ``OnnxParser``) fails, so nothing can be built.

Wheels, extracted modules and stubs are cached in ``$RETINA_EDGE_TRT_CACHE`` (default
``~/.cache/retina-edge/tensorrt-bindings``), one folder per version.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

#: JetPack 6's release, the last 10.x, and the current 11.x.
VERSIONS = ("10.3.0", "10.16.1.11", "11.4.0.106")
LIBRARIES = ("nvinfer", "nvinfer_plugin", "nvonnxparser")
ENV_FOLDER = "RETINA_EDGE_TRT_BINDINGS"  # set for the inner test session: the prepared folder


class Unavailable(Exception):
    """The tier cannot run here (no C compiler, no nm, or no package registry); the reason says which."""


def cache_root() -> Path:
    return Path(os.environ.get("RETINA_EDGE_TRT_CACHE", Path.home() / ".cache" / "retina-edge" / "tensorrt-bindings"))


def prepare(version: str) -> Path:
    """A folder holding ``tensorrt_bindings/`` of ``version`` and ``stubs/``; built once, then reused."""
    folder = cache_root() / version
    if (folder / "ready").is_file():
        return folder
    for tool in ("cc", "nm"):
        if shutil.which(tool) is None:
            raise Unavailable(f"no '{tool}' on PATH to build the stub libraries")
    with tempfile.TemporaryDirectory() as scratch:
        wheel = _download(version, Path(scratch))
        build = Path(scratch) / "build"
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(build, [n for n in archive.namelist() if n.startswith("tensorrt_bindings/")])
        _compile_stubs(build / "tensorrt_bindings" / "tensorrt.so", build / "stubs", int(version.split(".")[0]))
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(build, folder)
    (folder / "ready").write_text(version)
    return folder


def _download(version: str, into: Path) -> Path:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", python, "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
               f"tensorrt-cu12-bindings=={version}", "-d", str(into)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    wheels = list(into.glob("*.whl"))
    if done.returncode or not wheels:
        raise Unavailable(f"cannot download tensorrt-cu12-bindings=={version}: {done.stderr.strip()[-300:]}")
    return wheels[0]


def missing_symbols(module: Path) -> list[str]:
    """Strong undefined symbols of ``module`` that nothing loaded in this process defines."""
    listing = subprocess.run(["nm", "-D", "--undefined-only", str(module)], capture_output=True, text=True, check=True)
    process = ctypes.CDLL(None)
    symbols = []
    for line in listing.stdout.splitlines():
        kind, name = line.split()[-2:]
        if kind == "U" and "@" not in name and not hasattr(process, name):
            symbols.append(name)
    return sorted(symbols)


def _compile_stubs(module: Path, into: Path, major: int) -> None:
    into.mkdir(parents=True)
    source = into / "stub.c"
    # Every factory returns NULL: TensorRT's Python layer turns that into an exception.
    source.write_text("".join(f"void *{name}(void) {{ return 0; }}\n" for name in missing_symbols(module)))
    for library in LIBRARIES:
        target = into / f"lib{library}.so.{major}"
        subprocess.run(["cc", "-shared", "-fPIC", f"-Wl,-soname,{target.name}", "-o", str(target), str(source)],
                       check=True, capture_output=True)


def load(folder: Path):  # noqa: ANN201
    """Import the real ``tensorrt_bindings`` module of ``folder`` (once per process)."""
    major = (folder / "ready").read_text().split(".")[0]
    for library in LIBRARIES:  # loaded by soname, so the module's NEEDED entries resolve to them
        ctypes.CDLL(str(folder / "stubs" / f"lib{library}.so.{major}"), mode=ctypes.RTLD_GLOBAL)
    sys.path.insert(0, str(folder))
    import tensorrt_bindings

    return tensorrt_bindings
