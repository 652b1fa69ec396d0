"""Greedy, class-aware NMS in NumPy for the host side of deployed models (no torch).

Boxes are ``(N, 4)`` float x1y1x2y2 pixels; IoU uses ``(x2 - x1) * (y2 - y1)`` areas like
torchvision, so results equal the PyTorch reference's.
"""

from __future__ import annotations

import numpy as np


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices (int64) of boxes kept by greedy NMS, by decreasing score.

    A box is dropped when its IoU with an already kept, higher-scoring box exceeds
    ``iou_threshold``. Vectorised per kept box: O(kept x N).
    """
    order = np.argsort(-scores, kind="stable")
    boxes = boxes[order]
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    alive = np.ones(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep.append(i)
        rest = np.flatnonzero(alive[i + 1 :]) + i + 1
        if rest.size == 0:
            break
        inter_w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        inter_h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = inter_w * inter_h
        iou = inter / (areas[i] + areas[rest] - inter)
        alive[rest[iou > iou_threshold]] = False
    return order[np.asarray(keep, dtype=np.int64)]


def batched_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Class-aware NMS: boxes of different labels never suppress each other.

    Shifts each label's boxes into a disjoint region (torchvision's coordinate trick) so one pass
    of :func:`nms` serves all classes. Returns indices by decreasing score.
    """
    if boxes.shape[0] == 0:
        return np.zeros((0,), dtype=np.int64)
    offsets = labels.astype(np.float64) * (float(boxes.max()) + 1.0)
    shifted = boxes.astype(np.float64) + offsets[:, None]
    return nms(shifted, scores, iou_threshold)
