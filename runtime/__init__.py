"""Torch-free inference runtime: load a deployed model, preprocess, infer, decode anchors, NMS.

Nothing under ``retina_edge.runtime`` imports torch; optional engines (onnxruntime, tensorrt,
openvino, cuda-python) are imported only where used. Its wings, top to bottom (import-linter keeps
the order): ``video`` (pipeline, sources, tracking, sinks) and ``remote`` (Triton client) over
``core`` (Detector, finishing, results, model files) over ``backends`` over ``tensorrt`` (engine
files, CUDA memory, release facts).
"""

from retina_edge.runtime.backends.base import BackendOptions
from retina_edge.runtime.core.decode import decode_boxes
from retina_edge.runtime.core.detector import Detector
from retina_edge.runtime.core.nms import batched_nms, nms
from retina_edge.runtime.core.results import Detection, Detections
from retina_edge.runtime.remote.triton_client import TritonDetector

__all__ = ["BackendOptions", "Detection", "Detections", "Detector", "TritonDetector", "batched_nms", "decode_boxes", "nms"]
