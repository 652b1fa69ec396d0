"""Torch-free inference runtime: anchor decoding, NMS and (as backends land) model execution.

Nothing under ``retina_edge.runtime`` imports torch; optional engines (onnxruntime, tensorrt,
openvino, cuda-python) are imported only where used.
"""

from retina_edge.runtime.decode import decode_boxes
from retina_edge.runtime.nms import batched_nms, nms

__all__ = ["batched_nms", "decode_boxes", "nms"]
