"""DeepStream's preprocessing and stock parser, re-implemented from its sources for tests (no DeepStream here).

- :func:`nvinfer_input`: ``get_converted_buffer`` of ``gst-nvinfer/gstnvinfer.cpp`` (source ROI
  rounded down to even sizes, destination size truncated to integers, black padding, centred with
  symmetric padding) with a bilinear uint8 scale (``scaling-filter=1``), then nvinfer's
  ``y = net-scale-factor * (x - offsets[c])`` into planar RGB float32.
- :func:`stock_parser`: ``NvDsInferParseYoloV5CustomBatchedNMSTLT`` of
  ``libs/nvdsinfer_customparser/nvdsinfer_custombboxparser.cpp``: four output buffers by index,
  reinterpreted as ``int*`` and ``float*``, class 0's threshold for all, at most 200(+1) objects.
- :func:`to_frame`: ``attach_metadata_detector`` of ``gstnvinfer_meta_utils.cpp``.

Sources read with the search tool: github.com/hiennguyen9874/deepstream-sources (DeepStream 6.2,
commit f9948312d37804f03a7b48864a293316e11d5956) and a DeepStream 9.x copy of the parser file (same
function body).
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Placement:
    """Where nvinfer put a frame: ``offset_left/top`` pixels and ``ratio_x/y`` (network per frame pixel)."""

    offset_left: int
    offset_top: int
    ratio_x: float
    ratio_y: float


def read_config(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive in GLib key files
    parser.read(path)
    return parser


def nvinfer_input(image: np.ndarray, prop: configparser.SectionProxy, size: tuple[int, int]) -> tuple[np.ndarray, Placement]:
    """``(H, W, 3)`` uint8 RGB frame -> ``(3, H_net, W_net)`` float32 network input and its placement."""
    import cv2

    height, width = size
    src_h, src_w = image.shape[0] & ~1, image.shape[1] & ~1  # GST_ROUND_DOWN_2
    if prop.getboolean("maintain-aspect-ratio"):
        hdest = width * src_h / src_w
        wdest = height * src_w / src_h
        dest_w, dest_h = (width, int(hdest)) if hdest <= height else (int(wdest), height)  # guint truncation
    else:
        dest_w, dest_h = width, height
    left, top = ((width - dest_w) // 2, (height - dest_h) // 2) if prop.getboolean("symmetric-padding") else (0, 0)
    assert prop.getint("scaling-filter") == 1, "bilinear is what this emulation scales with"
    canvas = np.zeros((height, width, 3), dtype=np.uint8)  # "Pad the scaled image with black color."
    canvas[top : top + dest_h, left : left + dest_w] = cv2.resize(image[:src_h, :src_w], (dest_w, dest_h),
                                                                 interpolation=cv2.INTER_LINEAR)
    assert prop.getint("model-color-format") == 0  # RGB
    scale = np.float32(float(prop["net-scale-factor"]))
    offsets = np.array([float(v) for v in prop["offsets"].split(";")], dtype=np.float32)
    planar = (scale * (canvas.astype(np.float32) - offsets)).transpose(2, 0, 1)
    return np.ascontiguousarray(planar), Placement(left, top, dest_w / src_w, dest_h / src_h)


@dataclass(frozen=True)
class ParsedObject:
    class_id: int
    confidence: float
    left: float
    top: float
    width: float
    height: float


def stock_parser(buffers: list[bytes], network: tuple[int, int], num_classes: int, threshold: float) -> list[ParsedObject]:
    """The parser on one frame's four output buffers (raw bytes, in output order)."""
    height, width = network
    keep_count = np.frombuffer(buffers[0], dtype=np.int32)
    bboxes, scores, classes = (np.frombuffer(b, dtype=np.float32) for b in buffers[1:])
    objects: list[ParsedObject] = []
    keep_top_k = 200
    i = 0
    while i < keep_count[0] and len(objects) <= keep_top_k:
        x1, y1, x2, y2 = (float(v) for v in bboxes[4 * i : 4 * i + 4])
        in_class = int(np.uint32(np.float32(classes[i]))) < num_classes  # (unsigned int) p_classes[i]
        if scores[i] >= threshold and in_class and not (x2 < x1 or y2 < y1):
            left, top = np.clip(x1, 0, width - 1), np.clip(y1, 0, height - 1)
            box_w, box_h = np.clip(x2, 0, width - 1) - left, np.clip(y2, 0, height - 1) - top
            if box_h >= 0 and box_w >= 0:
                objects.append(ParsedObject(int(classes[i]), float(scores[i]), float(left), float(top), float(box_w),
                                            float(box_h)))
        i += 1
    return objects


def to_frame(objects: list[ParsedObject], placement: Placement, class_thresholds: float) -> tuple[np.ndarray, ...]:
    """nvinfer's per-class filter and the mapping to frame pixels: (boxes x1y1x2y2, scores, labels)."""
    kept = [o for o in objects if o.confidence >= class_thresholds]
    boxes = np.array([[(o.left - placement.offset_left) / placement.ratio_x, (o.top - placement.offset_top) / placement.ratio_y,
                       (o.left - placement.offset_left + o.width) / placement.ratio_x,
                       (o.top - placement.offset_top + o.height) / placement.ratio_y] for o in kept],
                     dtype=np.float32).reshape(-1, 4)
    return boxes, np.array([o.confidence for o in kept], dtype=np.float32), np.array([o.class_id for o in kept], dtype=np.int64)
