"""Torch-free inference runtime: load a deployed model, preprocess, infer, decode anchors, NMS.

Nothing under ``retina_edge.runtime`` imports torch; optional engines (onnxruntime, tensorrt,
openvino, cuda-python) are imported only where used.
"""

from retina_edge.runtime.backends.base import BackendOptions
from retina_edge.runtime.decode import decode_boxes
from retina_edge.runtime.detector import Detector
from retina_edge.runtime.nms import batched_nms, nms
from retina_edge.runtime.results import Detection, Detections
from retina_edge.runtime.triton_client import TritonDetector

__all__ = ["BackendOptions", "Detection", "Detections", "Detector", "TritonDetector", "batched_nms", "decode_boxes", "nms"]
