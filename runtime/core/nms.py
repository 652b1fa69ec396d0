"""Greedy, class-aware NMS in NumPy for the host side of deployed models (no torch).

Boxes are ``(N, 4)`` float x1y1x2y2 pixels; IoU uses ``(x2 - x1) * (y2 - y1)`` areas like
torchvision, and a 0/0 IoU (two empty boxes) suppresses nothing, as there, so results equal the
PyTorch reference's.

Speed comes from two exact shortcuts. Greedy NMS decides each box from higher-scoring boxes
only, so candidates are processed in score order, a block at a time, and processing stops once
``max_keep`` boxes are kept. Inside a block, "kept = alive and not suppressed by an earlier kept
box of the block" is solved by fixed-point iteration, which reaches the greedy answer in as many
rounds as the longest suppression chain in the block (usually 2 or 3).
"""

from __future__ import annotations

import numpy as np

BLOCK = 128


def intersections(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """``(N, M)``: the intersection areas of ``(N, 4)`` and ``(M, 4)`` x1y1x2y2 boxes."""
    width = np.minimum(boxes1[:, None, 2], boxes2[None, :, 2]) - np.maximum(boxes1[:, None, 0], boxes2[None, :, 0])
    height = np.minimum(boxes1[:, None, 3], boxes2[None, :, 3]) - np.maximum(boxes1[:, None, 1], boxes2[None, :, 1])
    return np.clip(width, 0, None) * np.clip(height, 0, None)


def _iou(boxes1: np.ndarray, area1: np.ndarray, boxes2: np.ndarray, area2: np.ndarray) -> np.ndarray:
    inter = intersections(boxes1, boxes2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area1[:, None] + area2[None, :] - inter)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int | None = None) -> np.ndarray:
    """Indices (int64) of boxes kept by greedy NMS, by decreasing score (at most ``max_keep``).

    A box is dropped when its IoU with an already kept, higher-scoring box exceeds
    ``iou_threshold``. Ties in score keep the input order.
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    sorted_boxes = np.asarray(boxes)[order]
    areas = (sorted_boxes[:, 2] - sorted_boxes[:, 0]) * (sorted_boxes[:, 3] - sorted_boxes[:, 1])
    limit = len(order) if max_keep is None else max_keep
    kept: list[np.ndarray] = []
    kept_boxes = sorted_boxes[:0]
    kept_areas = areas[:0]
    count = 0
    for start in range(0, len(order), BLOCK):
        if count >= limit:
            break
        block, block_areas = sorted_boxes[start : start + BLOCK], areas[start : start + BLOCK]
        alive = np.ones(len(block), dtype=bool)
        if count:
            alive &= ~(_iou(block, block_areas, kept_boxes, kept_areas) > iou_threshold).any(axis=1)
        # suppresses[j, i]: earlier box j would suppress later box i of this block.
        suppresses = np.triu(_iou(block, block_areas, block, block_areas) > iou_threshold, k=1)
        keep = alive.copy()
        while True:
            updated = alive & ~(suppresses & keep[:, None]).any(axis=0)
            if np.array_equal(updated, keep):
                break
            keep = updated
        index = np.flatnonzero(keep)
        kept.append(start + index)
        kept_boxes = np.concatenate([kept_boxes, block[index]])
        kept_areas = np.concatenate([kept_areas, block_areas[index]])
        count += index.size
    positions = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
    return order[positions[:limit]].astype(np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float,
                max_keep: int | None = None) -> np.ndarray:
    """Class-aware NMS: boxes of different labels never suppress each other.

    Shifts each label's boxes into a disjoint region (torchvision's coordinate trick, in float64
    so no precision is lost) so one pass of :func:`nms` serves all classes.
    """
    if boxes.shape[0] == 0:
        return np.zeros((0,), dtype=np.int64)
    offsets = labels.astype(np.float64) * (float(np.abs(boxes).max()) + 1.0)
    return nms(boxes.astype(np.float64) + offsets[:, None], scores, iou_threshold, max_keep)
