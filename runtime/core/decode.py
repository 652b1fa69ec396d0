"""Anchor decoding in NumPy (the torch-free twin of ``retina_edge.model.box_coder.BoxCoder.decode``)."""

from __future__ import annotations

import numpy as np

from retina_edge.config import BoxCoderConfig


def decode_boxes(deltas: np.ndarray, anchors: np.ndarray, config: BoxCoderConfig = BoxCoderConfig()) -> np.ndarray:
    """Boxes from ``(..., 4)`` deltas and broadcastable ``(..., 4)`` x1y1x2y2 anchors, float32.

    Same operation order as the PyTorch coder, so float32 results agree to rounding.
    """
    deltas = deltas.astype(np.float32, copy=False)
    anchors = anchors.astype(np.float32, copy=False)
    wx, wy, ww, wh = (np.float32(w) for w in config.weights)
    clamp = np.float32(config.scale_clamp)
    half = np.float32(0.5)
    widths = anchors[..., 2] - anchors[..., 0]
    heights = anchors[..., 3] - anchors[..., 1]
    ctr_x = anchors[..., 0] + half * widths
    ctr_y = anchors[..., 1] + half * heights
    dw = np.minimum(deltas[..., 2] / ww, clamp)
    dh = np.minimum(deltas[..., 3] / wh, clamp)
    pred_ctr_x = deltas[..., 0] / wx * widths + ctr_x
    pred_ctr_y = deltas[..., 1] / wy * heights + ctr_y
    half_w = half * (np.exp(dw) * widths)
    half_h = half * (np.exp(dh) * heights)
    return np.stack(
        (pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), axis=-1
    )
