"""retina-edge: RetinaNet from PyTorch to the edge (ONNX, TensorRT, ONNX Runtime, OpenVINO).

Importing this package does not import torch: ``build_model`` and ``load_model`` load it on first
use, so the torch-free runtime (``retina_edge.runtime``) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retina_edge._version import __version__

if TYPE_CHECKING:
    from retina_edge.model.retinanet import build_model
    from retina_edge.model.checkpoints import load_model

__all__ = ["__version__", "build_model", "load_model"]


def __getattr__(name: str) -> Any:
    if name == "build_model":
        from retina_edge.model.retinanet import build_model

        return build_model
    if name == "load_model":
        from retina_edge.model.checkpoints import load_model

        return load_model
    raise AttributeError(f"module 'retina_edge' has no attribute {name!r}")
