"""Host-side detection post-processing in NumPy (no torch), mirroring the PyTorch reference.

For graphs exported with ``postprocess=decode``: threshold the candidates, class-aware NMS, keep the
best ``detections_per_img``. For ``postprocess=none``: per-level top-k over (anchor, class) pairs
and anchor decoding first (:func:`candidates_from_raw`). Boxes are x1y1x2y2 network-input pixels.
"""

from __future__ import annotations

import numpy as np

from retina_edge.config import BoxCoderConfig, PostprocessConfig
from retina_edge.runtime.core.decode import decode_boxes
from retina_edge.runtime.core.nms import batched_nms


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def candidates_from_raw(
    cls_logits: np.ndarray, deltas: np.ndarray, level_anchors: list[np.ndarray], *,
    config: PostprocessConfig, box_coder: BoxCoderConfig, input_size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates of one image from raw head outputs ``(N, K)`` logits and ``(N, 4)`` deltas.

    Per level: scores above the threshold, the best ``topk_candidates`` of them, decoded and clipped
    to the (H, W) ``input_size``. Returns boxes ``(M, 4)``, scores ``(M,)``, int64 labels ``(M,)``.
    """
    num_classes = cls_logits.shape[1]
    # Threshold in logit space first: sigmoid of the few survivors only.
    with np.errstate(divide="ignore"):  # thresholds 0 and 1 are -inf and +inf logits
        logit_thresh = np.log(config.score_thresh) - np.log1p(-config.score_thresh)
    boxes, scores, labels = [], [], []
    start = 0
    for anchors in level_anchors:
        stop = start + len(anchors)
        flat = cls_logits[start:stop].reshape(-1)
        keep = np.flatnonzero(flat > logit_thresh)
        if keep.size > config.topk_candidates:
            keep = keep[np.argpartition(-flat[keep], config.topk_candidates - 1)[: config.topk_candidates]]
        level_scores = _sigmoid(flat[keep].astype(np.float32))
        anchor_idx = keep // num_classes
        decoded = decode_boxes(deltas[start:stop][anchor_idx], anchors[anchor_idx], box_coder)
        boxes.append(clip_boxes(decoded, input_size))
        scores.append(level_scores)
        labels.append(keep % num_classes)
        start = stop
    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(labels).astype(np.int64)


def clip_boxes(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Clamp x to [0, W] and y to [0, H]; ``size`` is (H, W)."""
    height, width = size
    out = boxes.copy()
    out[:, 0::2] = np.clip(out[:, 0::2], 0, width)
    out[:, 1::2] = np.clip(out[:, 1::2], 0, height)
    return out


def select_detections(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, config: PostprocessConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score threshold, class-aware NMS and the best ``detections_per_img``, by decreasing score."""
    above = scores > config.score_thresh
    boxes, scores, labels = boxes[above], scores[above], labels[above]
    keep = batched_nms(boxes, scores, labels, config.nms_thresh, max_keep=config.detections_per_img)
    return boxes[keep], scores[keep], labels[keep]
