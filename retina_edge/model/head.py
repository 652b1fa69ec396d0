"""Classification and box-regression subnets shared across pyramid levels (torchvision layout)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _conv_tower(channels: int, num_convs: int, group_norm: bool) -> nn.Sequential:
    """``num_convs`` x (conv3x3 [+ GroupNorm(32)] + ReLU); keys ``conv.{i}.0`` / ``conv.{i}.1``."""
    layers = []
    for _ in range(num_convs):
        if group_norm:
            block = nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                nn.GroupNorm(32, channels),
                nn.ReLU(inplace=True),
            )
        else:
            block = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True))
        layers.append(block)
    tower = nn.Sequential(*layers)
    for module in tower.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=0.01)
            if module.bias is not None:
                nn.init.constant_(module.bias, 0)
    return tower


def _flatten_level(output: Tensor, width: int) -> Tensor:
    """``(B, A*width, H, W)`` -> ``(B, H*W*A, width)``: anchors in (H, W, A) order."""
    batch, _, height, width_px = output.shape
    output = output.view(batch, -1, width, height, width_px)
    return output.permute(0, 3, 4, 1, 2).reshape(batch, -1, width)


class _Subnet(nn.Module):
    def __init__(self, num_convs: int) -> None:
        super().__init__()
        self._num_convs = num_convs

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        # Old torchvision checkpoints interleave conv and ReLU: conv.{2i} -> conv.{i}.0.
        for index in range(self._num_convs):
            for kind in ("weight", "bias"):
                old_key = f"{prefix}conv.{2 * index}.{kind}"
                new_key = f"{prefix}conv.{index}.0.{kind}"
                if old_key in state_dict and new_key not in state_dict:
                    state_dict[new_key] = state_dict.pop(old_key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class ClassificationHead(_Subnet):
    """Per level: tower -> conv3x3 to ``A*K`` logits. Output ``(B, sum(H*W*A), K)`` logits."""

    def __init__(
        self, *, channels: int, num_anchors: int, num_classes: int, num_convs: int, group_norm: bool,
        prior_probability: float,
    ) -> None:
        super().__init__(num_convs)
        self.conv = _conv_tower(channels, num_convs, group_norm)
        self.cls_logits = nn.Conv2d(channels, num_anchors * num_classes, 3, padding=1)
        nn.init.normal_(self.cls_logits.weight, std=0.01)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_probability) / prior_probability))
        self.num_classes = num_classes

    def forward(self, features: list[Tensor]) -> Tensor:
        return torch.cat(
            [_flatten_level(self.cls_logits(self.conv(f)), self.num_classes) for f in features], dim=1
        )


class RegressionHead(_Subnet):
    """Per level: tower -> conv3x3 to ``A*4`` deltas. Output ``(B, sum(H*W*A), 4)`` deltas."""

    def __init__(self, *, channels: int, num_anchors: int, num_convs: int, group_norm: bool) -> None:
        super().__init__(num_convs)
        self.conv = _conv_tower(channels, num_convs, group_norm)
        self.bbox_reg = nn.Conv2d(channels, num_anchors * 4, 3, padding=1)
        nn.init.normal_(self.bbox_reg.weight, std=0.01)
        nn.init.zeros_(self.bbox_reg.bias)

    def forward(self, features: list[Tensor]) -> Tensor:
        return torch.cat([_flatten_level(self.bbox_reg(self.conv(f)), 4) for f in features], dim=1)


class RetinaNetHead(nn.Module):
    """Both subnets; ``forward`` returns ``{"cls_logits": (B, N, K), "bbox_regression": (B, N, 4)}``."""

    def __init__(
        self, *, channels: int, num_anchors: int, num_classes: int, num_convs: int, group_norm: bool,
        prior_probability: float,
    ) -> None:
        super().__init__()
        self.classification_head = ClassificationHead(
            channels=channels, num_anchors=num_anchors, num_classes=num_classes, num_convs=num_convs,
            group_norm=group_norm, prior_probability=prior_probability,
        )
        self.regression_head = RegressionHead(
            channels=channels, num_anchors=num_anchors, num_convs=num_convs, group_norm=group_norm
        )

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        return {
            "cls_logits": self.classification_head(features),
            "bbox_regression": self.regression_head(features),
        }
