"""The RetinaNet reference model (PyTorch), a drop-in for torchvision's ``RetinaNet``.

Eval: ``model(list of (3, H, W) RGB float tensors in [0, 1]) -> list[{"boxes", "scores", "labels"}]``
with x1y1x2y2 boxes in each input image's pixels. Train: ``model(images, targets)`` returns
``{"classification": loss, "bbox_regression": loss}``; targets hold ``boxes`` (G, 4) x1y1x2y2 in
input pixels and int64 ``labels`` (G,).

Export does not live here: ``retina_edge.export`` wraps :meth:`RetinaNet.head_outputs`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from retina_edge.anchors import grid_anchors
from retina_edge.model.backbone import FrozenBatchNorm2d, ResNetBody, freeze_stages
from retina_edge.model.box_coder import BoxCoder
from retina_edge.model.boxes import box_iou
from retina_edge.errors import ConfigError
from retina_edge.config import ModelConfig
from retina_edge.model.archs import Arch, get_arch, model_config
from retina_edge.model.fpn import FeaturePyramid
from retina_edge.model.head import RetinaNetHead
from retina_edge.model.losses import box_regression_loss, classification_loss
from retina_edge.model.matcher import Matcher
from retina_edge.model.postprocess import postprocess_image
from retina_edge.model.registry import BACKBONES, FPNS, HEADS
from retina_edge.model.transform import RetinaTransform, scale_boxes
from retina_edge.model.widths import narrow


def norm_factory(config: ModelConfig):  # noqa: ANN201 (a callable making a norm layer)
    """The backbone's norm layer: FrozenBatchNorm (torchvision v1) or BatchNorm."""
    if config.norm == "frozen_bn":
        return partial(FrozenBatchNorm2d, eps=config.frozen_bn_eps)
    if config.norm == "bn":
        return nn.BatchNorm2d
    raise ConfigError(f"unknown norm {config.norm!r}; expected 'frozen_bn' or 'bn'")


@BACKBONES.register("resnet")
def build_resnet(config: ModelConfig, norm) -> ResNetBody:  # noqa: ANN001
    body = ResNetBody(depth=config.depth, norm=norm, width=config.backbone_width)
    freeze_stages(body, config.trainable_layers)
    return body


@FPNS.register("fpn")
def build_fpn(config: ModelConfig, in_channels: list[int]) -> FeaturePyramid:
    return FeaturePyramid(in_channels=in_channels, out_channels=config.fpn_channels, p6_from_c5=config.variant == "v2")


@HEADS.register("retinanet")
def build_head(config: ModelConfig) -> RetinaNetHead:
    return RetinaNetHead(
        channels=config.fpn_channels, num_anchors=config.anchors.num_anchors, num_classes=config.num_classes,
        num_convs=config.head_convs, group_norm=config.variant == "v2", prior_probability=config.prior_probability,
    )


class BackboneWithFPN(nn.Module):
    """Backbone body + FPN; ``forward((B, 3, H, W)) -> [P3..P7]`` (torchvision's key names), built
    by the builders ``arch`` names."""

    def __init__(self, config: ModelConfig, arch: Arch) -> None:
        super().__init__()
        self.body = BACKBONES.get(arch.backbone)(config, norm_factory(config))
        self.fpn = FPNS.get(arch.fpn)(config, self.body.out_channels)

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.fpn(self.body(x))


class RetinaNet(nn.Module):
    """RetinaNet built from a :class:`ModelConfig`. Use ``retina_edge.build_model`` to make one."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.variant not in ("v1", "v2"):
            raise ConfigError(f"unknown variant {config.variant!r}; expected 'v1' or 'v2'")
        self.config = config
        arch = get_arch(config.arch)
        self.backbone = BackboneWithFPN(config, arch)
        self.head = HEADS.get(arch.head)(config)
        self.transform = RetinaTransform(config.transform)
        self.box_coder = BoxCoder(config.box_coder)
        self.matcher = Matcher(
            high=config.fg_iou_thresh, low=config.bg_iou_thresh,
            allow_low_quality_matches=config.allow_low_quality_matches,
        )
        self._anchor_cache: dict[tuple, list[Tensor]] = {}
        if config.widths:  # a pruned model: its architecture with the recorded layers narrowed
            narrow(self, config.widths)

    def head_outputs(self, batch: Tensor) -> tuple[dict[str, Tensor], list[tuple[int, int]]]:
        """Raw outputs for a normalised, padded ``(B, 3, H, W)`` batch.

        Returns ``{"cls_logits": (B, N, K), "bbox_regression": (B, N, 4)}`` with N = sum over
        P3..P7 of H_l * W_l * A in (level, H, W, A) order, and the (H_l, W_l) of each level.
        """
        features = self.backbone(batch)
        return self.head(features), [(int(f.shape[-2]), int(f.shape[-1])) for f in features]

    def anchors(self, image_size: tuple[int, int], feature_shapes: list[tuple[int, int]]) -> list[Tensor]:
        """Per-level anchors ``(H_l * W_l * A, 4)`` for a padded input of (H, W) ``image_size``."""
        key = (tuple(image_size), tuple(feature_shapes))
        if key not in self._anchor_cache:
            levels = grid_anchors(feature_shapes, image_size, self.config.anchors)
            self._anchor_cache[key] = [torch.from_numpy(level) for level in levels]
        return self._anchor_cache[key]

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> list[dict[str, Tensor]] | dict[str, Tensor]:
        if self.training and targets is None:
            raise ValueError("targets are required in training mode")
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch, targets = self.transform(images, targets, training=self.training)
        outputs, feature_shapes = self.head_outputs(batch.tensors)
        level_anchors = [a.to(batch.tensors.device) for a in self.anchors(tuple(batch.tensors.shape[-2:]), feature_shapes)]
        if self.training:
            return self.compute_loss(outputs, torch.cat(level_anchors), targets)
        detections = self.postprocess(outputs, level_anchors, batch.image_sizes)
        for detection, resized, original in zip(detections, batch.image_sizes, original_sizes):
            detection["boxes"] = scale_boxes(detection["boxes"], resized, original)
        return detections

    def postprocess(
        self, outputs: dict[str, Tensor], level_anchors: list[Tensor], image_sizes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Detections per image, in the coordinates of the resized (unpadded) network input."""
        counts = [a.shape[0] for a in level_anchors]
        logits = outputs["cls_logits"].split(counts, dim=1)
        deltas = outputs["bbox_regression"].split(counts, dim=1)
        return [
            postprocess_image(
                [level[index] for level in logits], [level[index] for level in deltas], level_anchors,
                box_coder=self.box_coder, config=self.config.postprocess, image_size=image_size,
            )
            for index, image_size in enumerate(image_sizes)
        ]

    def compute_loss(
        self, outputs: dict[str, Tensor], anchors: Tensor, targets: list[dict[str, Tensor]]
    ) -> dict[str, Tensor]:
        """Focal loss and box loss, each normalised by the number of foreground anchors.

        Computed in float32 even when the heads ran under autocast (bfloat16 logits would round
        the focal term of confident anchors to zero).
        """
        outputs = {name: value.float() for name, value in outputs.items()}
        matched_idxs = []
        for target in targets:
            boxes = target["boxes"]
            if boxes.numel() == 0:
                matched_idxs.append(torch.full((anchors.shape[0],), -1, dtype=torch.int64, device=anchors.device))
            else:
                matched_idxs.append(self.matcher(box_iou(boxes, anchors)))
        config = self.config
        return {
            "classification": classification_loss(
                outputs["cls_logits"], [t["labels"] for t in targets], matched_idxs,
                alpha=config.focal_alpha, gamma=config.focal_gamma,
            ),
            "bbox_regression": box_regression_loss(
                outputs["bbox_regression"], [t["boxes"] for t in targets], anchors, matched_idxs,
                box_coder=self.box_coder, loss_type=config.box_loss,
            ),
        }


def build_model(arch: str, *, num_classes: int = 91, **kwargs: Any) -> RetinaNet:
    """An untrained :class:`RetinaNet` of a registered architecture (see
    :func:`~retina_edge.model.archs.model_config` for the keywords)."""
    return RetinaNet(model_config(arch, num_classes=num_classes, **kwargs))
