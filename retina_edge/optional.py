"""Optional packages: imported where used, with one table of install hints (no torch).

``require("onnx", "ONNX export")`` returns the module or raises :class:`MissingDependencyError`
naming the feature and the install line; the CLI also turns a bare ``ModuleNotFoundError`` of a
package listed here into that one-line message (:func:`install_hint`).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from retina_edge.errors import MissingDependencyError

#: Top-level package -> how to install it.
INSTALL_HINTS = {
    "torch": ("pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu (the CPU build; "
              "without --index-url pip picks the CUDA build), then pip install 'retina-edge[torch,onnx]'"),
    "onnx": "pip install 'retina-edge[onnx]'",
    "onnxruntime": "pip install onnxruntime (or onnxruntime-gpu for the CUDA/TensorRT providers)",
    "onnxslim": "pip install 'retina-edge[onnx]'",
    "modelopt": "pip install 'retina-edge[modelopt]'",
    "torch_pruning": "pip install 'retina-edge[prune]'",
    "openvino": "pip install openvino",
    "tensorrt": ("pip install tensorrt (desktop GPUs, from NVIDIA's package index), or use the TensorRT "
                 "JetPack ships on Jetson"),
    "cuda": "pip install cuda-python (or pycuda)",
    "pycuda": "pip install cuda-python (or pycuda)",
    "pycocotools": "pip install pycocotools",
    "matplotlib": "pip install matplotlib",
    "tritonclient": "pip install 'retina-edge[serve]'",
    # trackers asks for opencv-python, a second OpenCV beside retina-edge's headless one: --no-deps.
    "trackers": "pip install 'retina-edge[track]' && pip install --no-deps 'trackers>=2.6'",
    "supervision": "pip install 'retina-edge[track]' && pip install --no-deps 'trackers>=2.6'",
    "mcap": "pip install 'retina-edge[robotics]'",
    "foxglove": "pip install 'retina-edge[robotics]'",
    # nvidia-pytriton pins numpy<2 though its tritonserver binary does not need it, hence --no-deps.
    "pytriton": ("use NVIDIA's Triton container (tritonserver on PATH), or pip install --no-deps nvidia-pytriton "
                 "for its CPU build of tritonserver"),
}


def install_hint(module: str) -> str | None:
    """The install line for ``module`` (any submodule of a listed package), or None if not optional."""
    return INSTALL_HINTS.get(module.split(".")[0])


def require(module: str, feature: str) -> ModuleType:
    """``import module`` for ``feature``; a :class:`MissingDependencyError` with the install hint if absent."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        missing = error.name or module
        if install_hint(missing) is None or not module.startswith(missing.split(".")[0]):
            raise
        raise MissingDependencyError(missing.split(".")[0], feature, install_hint(missing) or f"pip install {missing}") from None
