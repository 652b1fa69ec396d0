"""Matching two sets of detections, for parity tests and ``verify`` (NumPy only, no torch).

A reference detection is matched to an unused candidate of the same label whose score is within
``score_tol`` and whose box has IoU >= ``iou_thresh`` with it, or whose four coordinates are all
within ``coord_tol`` pixels (boxes clipped at the image border can have zero area, where IoU is
undefined). Boxes are x1y1x2y2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MatchResult:
    matched: int
    num_reference: int
    num_candidate: int
    pairs: tuple[tuple[int, int], ...]

    @property
    def fraction(self) -> float:
        """Share of reference detections matched (1.0 when the reference is empty)."""
        return self.matched / self.num_reference if self.num_reference else 1.0


def pairwise_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """IoU of ``(N, 4)`` and ``(M, 4)`` boxes -> ``(N, M)``; 0 where the union is empty."""
    boxes1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    boxes2 = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = np.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area1 = np.prod(boxes1[:, 2:] - boxes1[:, :2], axis=1)
    area2 = np.prod(boxes2[:, 2:] - boxes2[:, :2], axis=1)
    union = area1[:, None] + area2[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


@dataclass(frozen=True)
class MatchTolerance:
    """When a candidate matches a reference detection (see the module docstring)."""

    iou_thresh: float = 0.99
    score_tol: float = 1e-3
    coord_tol: float = 0.01


#: ``(boxes (N, 4) x1y1x2y2, scores (N,), labels (N,))``.
DetectionArrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def match_detections(reference: DetectionArrays, candidate: DetectionArrays,
                     tolerance: MatchTolerance = MatchTolerance()) -> MatchResult:
    """Greedy one-to-one matching of reference detections (in score order) to candidates."""
    (ref_boxes, ref_scores, ref_labels), (boxes, scores, labels) = reference, candidate
    iou_thresh, score_tol, coord_tol = tolerance.iou_thresh, tolerance.score_tol, tolerance.coord_tol
    ref_boxes, boxes = np.asarray(ref_boxes).reshape(-1, 4), np.asarray(boxes).reshape(-1, 4)
    iou = pairwise_iou(ref_boxes, boxes)
    close = np.all(np.abs(ref_boxes[:, None, :] - boxes[None, :, :]) <= coord_tol, axis=2)
    ok = (
        (np.asarray(ref_labels)[:, None] == np.asarray(labels)[None, :])
        & (np.abs(np.asarray(ref_scores)[:, None] - np.asarray(scores)[None, :]) <= score_tol)
        & ((iou >= iou_thresh) | close)
    )
    used = np.zeros(len(boxes), dtype=bool)
    pairs = []
    for i in np.argsort(-np.asarray(ref_scores), kind="stable"):
        options = np.flatnonzero(ok[i] & ~used)
        if options.size:
            j = options[np.argmax(iou[i, options])]
            used[j] = True
            pairs.append((int(i), int(j)))
    return MatchResult(len(pairs), len(ref_boxes), len(boxes), tuple(pairs))
