"""Encoding boxes as regression targets relative to anchors, and decoding them back (PyTorch).

Deltas are ``(wx*dx, wy*dy, ww*log(w/wa), wh*log(h/ha))`` with ``dx = (cx - cxa) / wa``; all boxes
are x1y1x2y2 pixels. The NumPy twin used by the torch-free runtime lives in
``retina_edge.runtime.core.decode`` and is tested against this one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from retina_edge.config import BoxCoderConfig


class BoxCoder:
    def __init__(self, config: BoxCoderConfig = BoxCoderConfig()) -> None:
        self.weights = config.weights
        self.scale_clamp = config.scale_clamp

    def encode(self, boxes: Tensor, anchors: Tensor) -> Tensor:
        """Regression targets of ``(N, 4)`` ground-truth boxes for ``(N, 4)`` anchors -> ``(N, 4)``."""
        wx, wy, ww, wh = self.weights
        anchor_w = anchors[:, 2] - anchors[:, 0]
        anchor_h = anchors[:, 3] - anchors[:, 1]
        anchor_cx = anchors[:, 0] + 0.5 * anchor_w
        anchor_cy = anchors[:, 1] + 0.5 * anchor_h
        box_w = boxes[:, 2] - boxes[:, 0]
        box_h = boxes[:, 3] - boxes[:, 1]
        box_cx = boxes[:, 0] + 0.5 * box_w
        box_cy = boxes[:, 1] + 0.5 * box_h
        return torch.stack(
            (
                wx * (box_cx - anchor_cx) / anchor_w,
                wy * (box_cy - anchor_cy) / anchor_h,
                ww * torch.log(box_w / anchor_w),
                wh * torch.log(box_h / anchor_h),
            ),
            dim=1,
        )

    def decode(self, deltas: Tensor, anchors: Tensor) -> Tensor:
        """Boxes from ``(..., 4)`` deltas and broadcastable ``(..., 4)`` anchors -> ``(..., 4)``.

        Operation order follows torchvision so float32 results agree to the last bit.
        """
        anchors = anchors.to(deltas.dtype)
        wx, wy, ww, wh = self.weights
        widths = anchors[..., 2] - anchors[..., 0]
        heights = anchors[..., 3] - anchors[..., 1]
        ctr_x = anchors[..., 0] + 0.5 * widths
        ctr_y = anchors[..., 1] + 0.5 * heights
        dx = deltas[..., 0] / wx
        dy = deltas[..., 1] / wy
        dw = torch.clamp(deltas[..., 2] / ww, max=self.scale_clamp)
        dh = torch.clamp(deltas[..., 3] / wh, max=self.scale_clamp)
        pred_ctr_x = dx * widths + ctr_x
        pred_ctr_y = dy * heights + ctr_y
        half_w = 0.5 * (torch.exp(dw) * widths)
        half_h = 0.5 * (torch.exp(dh) * heights)
        return torch.stack(
            (pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h),
            dim=-1,
        )
