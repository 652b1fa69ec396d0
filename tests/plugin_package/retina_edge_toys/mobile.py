"""A MobileNet-style backbone: a strided stem, then depthwise-separable stages; C3, C4, C5 at strides 8, 16, 32."""

import torch
from torch import nn


def _separable(inputs: int, outputs: int, stride: int, norm) -> nn.Sequential:  # noqa: ANN001
    return nn.Sequential(
        nn.Conv2d(inputs, inputs, 3, stride, 1, groups=inputs, bias=False), norm(inputs), nn.ReLU(inplace=True),
        nn.Conv2d(inputs, outputs, 1, bias=False), norm(outputs), nn.ReLU(inplace=True))


class MobileBody(nn.Module):
    def __init__(self, *, width: int, norm) -> None:  # noqa: ANN001
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), norm(width), nn.ReLU(inplace=True),
                                  _separable(width, width, 2, norm))
        self.stage3 = _separable(width, 2 * width, 2, norm)
        self.stage4 = _separable(2 * width, 4 * width, 2, norm)
        self.stage5 = _separable(4 * width, 8 * width, 2, norm)
        self.out_channels = [2 * width, 4 * width, 8 * width]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c3 = self.stage3(self.stem(x))
        c4 = self.stage4(c3)
        return [c3, c4, self.stage5(c4)]
