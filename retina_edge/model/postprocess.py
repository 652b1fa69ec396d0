"""Reference detection post-processing in PyTorch (torchvision's ``postprocess_detections``).

Per level: sigmoid -> score threshold -> top-k over (anchor, class) pairs -> decode -> clip.
Then class-aware NMS over all levels and the best ``detections_per_img`` are kept.
"""

from __future__ import annotations

import torch
from torch import Tensor

from retina_edge.model.box_coder import BoxCoder
from retina_edge.model.boxes import batched_nms, clip_boxes_to_image
from retina_edge.config import PostprocessConfig


def select_level_candidates(
    logits: Tensor, deltas: Tensor, anchors: Tensor, *, box_coder: BoxCoder, config: PostprocessConfig,
    image_size: tuple[int, int],
) -> tuple[Tensor, Tensor, Tensor]:
    """Top-k candidates of one level of one image.

    ``logits``: ``(N_l, K)``; ``deltas``/``anchors``: ``(N_l, 4)``; ``image_size``: (H, W) to clip to.
    Returns boxes ``(k, 4)`` x1y1x2y2, scores ``(k,)`` and int64 labels ``(k,)``, by decreasing score.
    """
    num_classes = logits.shape[-1]
    scores = torch.sigmoid(logits).flatten()
    keep = torch.where(scores > config.score_thresh)[0]
    scores = scores[keep]
    scores, order = scores.topk(min(config.topk_candidates, keep.numel()))
    flat_idxs = keep[order]
    anchor_idxs = torch.div(flat_idxs, num_classes, rounding_mode="floor")
    labels = flat_idxs % num_classes
    boxes = box_coder.decode(deltas[anchor_idxs], anchors[anchor_idxs])
    return clip_boxes_to_image(boxes, image_size), scores, labels


def postprocess_image(
    logits_per_level: list[Tensor], deltas_per_level: list[Tensor], anchors_per_level: list[Tensor], *,
    box_coder: BoxCoder, config: PostprocessConfig, image_size: tuple[int, int],
) -> dict[str, Tensor]:
    """Detections of one image in the coordinates of the (unpadded) network input.

    Returns ``{"boxes": (D, 4) float, "scores": (D,) float, "labels": (D,) int64}``, D <=
    ``detections_per_img``, sorted by decreasing score.
    """
    boxes, scores, labels = [], [], []
    for logits, deltas, anchors in zip(logits_per_level, deltas_per_level, anchors_per_level):
        level_boxes, level_scores, level_labels = select_level_candidates(
            logits, deltas, anchors, box_coder=box_coder, config=config, image_size=image_size
        )
        boxes.append(level_boxes)
        scores.append(level_scores)
        labels.append(level_labels)
    all_boxes, all_scores, all_labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
    keep = batched_nms(all_boxes, all_scores, all_labels, config.nms_thresh)[: config.detections_per_img]
    return {"boxes": all_boxes[keep], "scores": all_scores[keep], "labels": all_labels[keep]}
