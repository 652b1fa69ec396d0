"""Feature pyramid P3..P7 over C3..C5, weight-compatible with torchvision's FPN + LastLevelP6P7."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def _remap_legacy_keys(state_dict: dict, prefix: str, blocks: tuple[str, ...], count: int) -> None:
    """torchvision < 0.13 stored ``inner_blocks.0.weight``; now it is ``inner_blocks.0.0.weight``."""
    for block in blocks:
        for index in range(count):
            for kind in ("weight", "bias"):
                old_key = f"{prefix}{block}.{index}.{kind}"
                if old_key in state_dict:
                    state_dict[f"{prefix}{block}.{index}.0.{kind}"] = state_dict.pop(old_key)


class LastLevelP6P7(nn.Module):
    """P6 = conv3x3/2 of P5 (v1) or of C5 (v2); P7 = conv3x3/2 of ReLU(P6)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
        for module in (self.p6, self.p7):
            nn.init.kaiming_uniform_(module.weight, a=1)
            nn.init.constant_(module.bias, 0)
        self.use_p5 = in_channels == out_channels

    def forward(self, c5: Tensor, p5: Tensor) -> list[Tensor]:
        p6 = self.p6(p5 if self.use_p5 else c5)
        return [p6, self.p7(F.relu(p6))]


class FeaturePyramid(nn.Module):
    """``forward([C3, C4, C5]) -> [P3, P4, P5, P6, P7]``, each with ``out_channels`` channels.

    ``p6_from_c5`` selects torchvision's v2 variant.
    """

    def __init__(self, *, in_channels: list[int], out_channels: int, p6_from_c5: bool) -> None:
        super().__init__()
        self.inner_blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(ch, out_channels, 1)) for ch in in_channels
        )
        self.layer_blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1)) for _ in in_channels
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=1)
                nn.init.constant_(module.bias, 0)
        p6_in = in_channels[-1] if p6_from_c5 else out_channels
        self.extra_blocks = LastLevelP6P7(p6_in, out_channels)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        _remap_legacy_keys(state_dict, prefix, ("inner_blocks", "layer_blocks"), len(self.inner_blocks))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        last_inner = self.inner_blocks[-1](features[-1])
        results = [self.layer_blocks[-1](last_inner)]
        for index in range(len(features) - 2, -1, -1):
            lateral = self.inner_blocks[index](features[index])
            top_down = F.interpolate(last_inner, size=lateral.shape[-2:], mode="nearest")
            last_inner = lateral + top_down
            results.insert(0, self.layer_blocks[index](last_inner))
        return results + self.extra_blocks(features[-1], results[-1])
