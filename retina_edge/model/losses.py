"""RetinaNet losses: sigmoid focal loss for classification, L1 or GIoU for boxes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from retina_edge.model.boxes import generalized_box_iou
from retina_edge.model.box_coder import BoxCoder
from retina_edge.model.matcher import BETWEEN_THRESHOLDS


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, *, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Element-wise focal loss (Lin et al. 2017): ``alpha_t * (1 - p_t)^gamma * BCE``.

    ``alpha < 0`` disables the class weighting. Returns a tensor shaped like ``logits``.
    """
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def classification_loss(
    cls_logits: Tensor, labels: list[Tensor], matched_idxs: list[Tensor], *, alpha: float, gamma: float
) -> Tensor:
    """Focal loss summed over non-ignored anchors, divided by foreground count, averaged over images.

    ``cls_logits``: ``(B, N, K)``; ``labels[i]``: ``(G_i,)`` contiguous labels; ``matched_idxs[i]``:
    ``(N,)`` from the matcher.
    """
    losses = []
    for logits, image_labels, matched in zip(cls_logits, labels, matched_idxs):
        foreground = matched >= 0
        num_foreground = int(foreground.sum())
        target = torch.zeros_like(logits)
        target[foreground, image_labels[matched[foreground]]] = 1.0
        valid = matched != BETWEEN_THRESHOLDS
        loss = sigmoid_focal_loss(logits[valid], target[valid], alpha=alpha, gamma=gamma).sum()
        losses.append(loss / max(1, num_foreground))
    return torch.stack(losses).mean()


def box_regression_loss(
    bbox_regression: Tensor,
    gt_boxes: list[Tensor],
    anchors: Tensor,
    matched_idxs: list[Tensor],
    *,
    box_coder: BoxCoder,
    loss_type: str,
) -> Tensor:
    """L1 on encoded deltas (``"l1"``) or GIoU on decoded boxes (``"giou"``), foreground only.

    ``bbox_regression``: ``(B, N, 4)``; ``anchors``: ``(N, 4)`` shared by the batch.
    """
    losses = []
    for deltas, boxes, matched in zip(bbox_regression, gt_boxes, matched_idxs):
        foreground = torch.where(matched >= 0)[0]
        num_foreground = foreground.numel()
        matched_boxes = boxes[matched[foreground]]
        fg_deltas, fg_anchors = deltas[foreground], anchors[foreground]
        if loss_type == "l1":
            target = box_coder.encode(matched_boxes, fg_anchors)
            loss = F.l1_loss(fg_deltas, target, reduction="sum")
        elif loss_type == "giou":
            predicted = box_coder.decode(fg_deltas, fg_anchors)
            loss = (1 - torch.diagonal(generalized_box_iou(predicted, matched_boxes))).sum()
        else:
            raise ValueError(f"unknown box loss {loss_type!r}; expected 'l1' or 'giou'")
        losses.append(loss / max(1, num_foreground))
    return torch.stack(losses).mean()
