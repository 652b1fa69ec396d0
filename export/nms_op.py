"""ONNX ``NonMaxSuppression`` as a traceable PyTorch op (TorchScript-based exporter).

In PyTorch it runs :func:`retina_edge.model.boxes.nms` so the module can be run and traced; in the
exported graph it becomes one standard ``NonMaxSuppression`` node (ORT, OpenVINO, TensorRT INMSLayer).
"""

from __future__ import annotations

import torch
from torch import Tensor

from retina_edge.model.boxes import nms


class _NonMaxSuppression(torch.autograd.Function):
    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, max_output: int, iou_thresh: float, score_thresh: float) -> Tensor:  # noqa: ANN001
        selected = []
        for batch_index in range(boxes.shape[0]):
            for class_index in range(scores.shape[1]):
                class_scores = scores[batch_index, class_index]
                candidates = torch.where(class_scores > score_thresh)[0]
                keep = candidates[nms(boxes[batch_index, candidates], class_scores[candidates], iou_thresh)][:max_output]
                rows = torch.stack([torch.full_like(keep, batch_index), torch.full_like(keep, class_index), keep], dim=1)
                selected.append(rows)
        return torch.cat(selected) if selected else torch.zeros((0, 3), dtype=torch.int64)

    @staticmethod
    def symbolic(g, boxes, scores, max_output, iou_thresh, score_thresh):  # noqa: ANN001, ANN205
        return g.op(
            "NonMaxSuppression", boxes, scores,
            g.op("Constant", value_t=torch.tensor([max_output], dtype=torch.int64)),
            g.op("Constant", value_t=torch.tensor([iou_thresh], dtype=torch.float32)),
            g.op("Constant", value_t=torch.tensor([score_thresh], dtype=torch.float32)),
        )


def non_max_suppression(boxes: Tensor, scores: Tensor, max_output: int, iou_thresh: float, score_thresh: float) -> Tensor:
    """ONNX semantics: ``boxes (B, N, 4)``, ``scores (B, C, N)`` -> selected ``(S, 3)`` int64 rows
    of (batch, class, box index), per (batch, class) by decreasing score, at most ``max_output`` each.
    Boxes with score <= ``score_thresh`` are never selected; IoU > ``iou_thresh`` suppresses."""
    return _NonMaxSuppression.apply(boxes, scores, max_output, iou_thresh, score_thresh)
