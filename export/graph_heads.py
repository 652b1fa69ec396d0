"""What the exported graph computes after the network: nothing, decode, decode + NMS, or decode +
NMS for DeepStream (its input normalisation folded in, its outputs in the stock parser's types).

Each wrapper takes a normalised ``(B, 3, H, W)`` batch at the fixed export size and returns the
tensors named in :mod:`retina_edge.contract`. Decoding uses only plain ops (Sigmoid, TopK, Gather,
Exp, Clip) so TensorRT and every ONNX runtime can run it; the anchors are constants computed by
:func:`retina_edge.anchors.grid_anchors` for the export size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from retina_edge.anchors import feature_shapes_for, grid_anchors
from retina_edge.contract import GraphTail
from retina_edge.export.nms_op import non_max_suppression
from retina_edge.model.retinanet import RetinaNet


class TailModule(nn.Module):
    """``forward(images)`` is the network on :meth:`network_input`, then :meth:`tail` on its head
    outputs; ``network_input`` and ``tail`` alone let a caller that runs the network itself
    (``verify``) reuse them. Built as ``Class(model, input_size, tail)``, as the tail table
    (:data:`retina_edge.contract.TAILS`) names it."""

    def __init__(self, model: RetinaNet, input_size: tuple[int, int], tail: GraphTail) -> None:
        super().__init__()
        self.model = model
        self.input_size = input_size

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        outputs, _ = self.model.head_outputs(self.network_input(images))
        return self.tail(outputs)

    def network_input(self, images: Tensor) -> Tensor:
        """The normalised batch the network takes, from the graph's input (the same here)."""
        return images

    def tail(self, outputs: dict[str, Tensor]) -> tuple[Tensor, ...]:
        raise NotImplementedError


class RawOutputs(TailModule):
    """``images -> (cls_logits (B, N, K), bbox_regression (B, N, 4))``."""

    def tail(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        return outputs["cls_logits"], outputs["bbox_regression"]


class DecodedCandidates(TailModule):
    """``images -> (boxes (B, M, 4), scores (B, M), labels (B, M))``: per-level top-k, decoded, clipped.

    k per level is ``min(tail.topk_candidates, N_l * K)``, a constant for the fixed input size, so
    every output has a static shape apart from the batch axis.
    """

    def __init__(self, model: RetinaNet, input_size: tuple[int, int], tail: GraphTail) -> None:
        super().__init__(model, input_size, tail)
        config = model.config
        levels = grid_anchors(feature_shapes_for(input_size), input_size, config.anchors)
        self.level_sizes = [len(level) for level in levels]
        self.num_classes = config.num_classes
        self.topk = [min(tail.topk_candidates, n * config.num_classes) for n in self.level_sizes]
        for index, level in enumerate(levels):
            self.register_buffer(f"anchors_{index}", torch.from_numpy(level), persistent=False)

    @property
    def num_candidates(self) -> int:
        return sum(self.topk)

    def tail(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        logits = outputs["cls_logits"].split(self.level_sizes, dim=1)
        deltas = outputs["bbox_regression"].split(self.level_sizes, dim=1)
        boxes, scores, labels = [], [], []
        height, width = self.input_size
        for index, k in enumerate(self.topk):
            flat_scores = torch.sigmoid(logits[index]).flatten(1)  # (B, N_l * K)
            level_scores, flat_idx = flat_scores.topk(k, dim=1)
            anchor_idx = torch.div(flat_idx, self.num_classes, rounding_mode="floor")
            level_deltas = torch.gather(deltas[index], 1, anchor_idx.unsqueeze(-1).expand(-1, -1, 4))
            anchors = getattr(self, f"anchors_{index}")[anchor_idx]
            decoded = self.model.box_coder.decode(level_deltas, anchors)
            x = decoded[..., 0::2].clamp(min=0, max=width)
            y = decoded[..., 1::2].clamp(min=0, max=height)
            boxes.append(torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1))
            scores.append(level_scores)
            labels.append(flat_idx % self.num_classes)
        return torch.cat(boxes, dim=1), torch.cat(scores, dim=1), torch.cat(labels, dim=1)


class NmsDetections(TailModule):
    """``images -> (num_detections (B, 1), det_boxes (B, D, 4), det_scores (B, D), det_labels (B, D))``.

    Class-aware NMS as one ONNX ``NonMaxSuppression`` over class-shifted boxes (each label moved
    into its own coordinate range), then the best ``D = detections_per_img`` kept per image and
    zero-padded. TensorRT maps the op to INMSLayer, whose input is capped at 5000 boxes: the
    candidate count M (at most 5 x ``topk_candidates``) stays within it at the default 1000.
    The thresholds are the ones ``tail`` bakes in.
    """

    def __init__(self, model: RetinaNet, input_size: tuple[int, int], tail: GraphTail) -> None:
        super().__init__(model, input_size, tail)
        self.candidates = DecodedCandidates(model, input_size, tail)
        self.max_detections = min(tail.detections_per_img, self.candidates.num_candidates)
        self.score_thresh = tail.score_thresh
        self.iou_thresh = tail.nms_thresh
        self.class_offset = float(max(input_size)) + 1.0

    def tail(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        boxes, scores, labels = self.candidates.tail(outputs)
        batch, num = scores.shape
        shifted = boxes + (labels.to(boxes.dtype) * self.class_offset).unsqueeze(-1)
        selected = non_max_suppression(shifted, scores.unsqueeze(1), self.max_detections, self.iou_thresh, self.score_thresh)
        flat = selected[:, 0] * num + selected[:, 2]
        keep = torch.zeros(batch * num, dtype=scores.dtype, device=scores.device).index_put((flat,), torch.ones_like(flat, dtype=scores.dtype))
        kept_scores = scores * keep.view(batch, num)
        det_scores, order = kept_scores.topk(self.max_detections, dim=1)
        det_boxes = torch.gather(boxes, 1, order.unsqueeze(-1).expand(-1, -1, 4))
        det_labels = torch.gather(labels, 1, order)
        valid = det_scores > 0
        num_detections = valid.sum(dim=1, keepdim=True).to(torch.int64)
        det_boxes = det_boxes * valid.unsqueeze(-1).to(det_boxes.dtype)
        det_labels = det_labels * valid.to(det_labels.dtype)
        return num_detections, det_boxes, det_scores, det_labels


class DeepStreamDetections(NmsDetections):
    """The NMS tail as DeepStream's stock ``NvDsInferParseYoloV5CustomBatchedNMSTLT`` reads it.

    ``images``: ``(B, 3, H, W)`` RGB in [0, 1], what nvinfer computes with ``net-scale-factor=1/255``
    and zero ``offsets`` (nvinfer has one scalar scale, so the model's per-channel std cannot go in
    its config): the graph applies ``(x - mean) / std`` as one multiply-add. Outputs, by index:
    ``num_detections (B, 1)`` int32, ``det_boxes (B, D, 4)`` float32 x1y1x2y2 input pixels,
    ``det_scores (B, D)`` float32, ``det_labels (B, D)`` float32 class index, D <= 200.
    """

    def __init__(self, model: RetinaNet, input_size: tuple[int, int], tail: GraphTail) -> None:
        super().__init__(model, input_size, tail)
        transform = model.config.transform
        mean = torch.tensor(transform.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(transform.image_std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("input_scale", 1.0 / std, persistent=False)
        self.register_buffer("input_shift", -mean / std, persistent=False)

    def network_input(self, images: Tensor) -> Tensor:
        return images * self.input_scale + self.input_shift

    def tail(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        num_detections, det_boxes, det_scores, det_labels = super().tail(outputs)
        return num_detections.to(torch.int32), det_boxes, det_scores, det_labels.to(torch.float32)
