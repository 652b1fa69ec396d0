"""Box operations in PyTorch: IoU, GIoU, clipping and class-aware NMS.

All boxes are x1y1x2y2 float tensors in pixels. Areas use ``(x2 - x1) * (y2 - y1)`` (no +1),
matching torchvision.ops, so the reference model reproduces torchvision's detections.
"""

from __future__ import annotations

import torch
from torch import Tensor


def box_area(boxes: Tensor) -> Tensor:
    """Area of ``(N, 4)`` boxes -> ``(N,)``."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _inter_union(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    area1, area2 = box_area(boxes1), box_area(boxes2)
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter, area1[:, None] + area2[None, :] - inter


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` boxes -> ``(N, M)``."""
    inter, union = _inter_union(boxes1, boxes2)
    return inter / union


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalised IoU (Rezatofighi et al. 2019) -> ``(N, M)`` in [-1, 1]."""
    inter, union = _inter_union(boxes1, boxes2)
    iou = inter / union
    top_left = torch.min(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    hull = wh[..., 0] * wh[..., 1]
    return iou - (hull - union) / hull


def clip_boxes_to_image(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clamp x to [0, W] and y to [0, H]; ``size`` is (H, W)."""
    height, width = size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x, y), dim=-1).reshape(boxes.shape)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS: keep the highest score, drop boxes with IoU > threshold, repeat.

    Returns int64 indices into ``boxes``, sorted by decreasing score.
    """
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    suppresses = box_iou(boxes[order], boxes[order]) > iou_threshold
    removed = torch.zeros(order.numel(), dtype=torch.bool)
    keep = []
    suppresses_cpu = suppresses.cpu()
    for i in range(order.numel()):
        if removed[i]:
            continue
        keep.append(i)
        removed |= suppresses_cpu[i]
    return order[torch.as_tensor(keep, dtype=torch.int64, device=boxes.device)]


def batched_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """Class-aware NMS: boxes of different labels never suppress each other.

    Runs NMS per label and merges; returns indices sorted by decreasing score.
    """
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    for label in torch.unique(labels):
        idxs = torch.where(labels == label)[0]
        keep_mask[idxs[nms(boxes[idxs], scores[idxs], iou_threshold)]] = True
    keep = torch.where(keep_mask)[0]
    return keep[scores[keep].sort(descending=True, stable=True).indices]
