"""ResNet-18/34/50/101 bodies returning C3, C4, C5, weight-compatible with torchvision.

Module names match torchvision's ``resnet*`` (``conv1``, ``bn1``, ``layer1..4``, ``downsample``), so
torchvision's ImageNet checkpoints (minus ``fc``) and the ``backbone.body.*`` part of its RetinaNet
checkpoints load by exact key.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from retina_edge.errors import ConfigError

NormFactory = Callable[[int], nn.Module]

# (block type, blocks per stage) for each supported depth.
RESNET_SPECS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters (buffers, never trained).

    ``eps`` is configurable because torchvision's v1 COCO RetinaNet weights were made with eps 0.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        # Checkpoints saved from nn.BatchNorm2d carry a counter that frozen BN has no use for.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        bias = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int, downsample: nn.Module | None, norm: NormFactory):
        super().__init__()
        self.conv1 = _conv3x3(in_ch, width, stride)
        self.bn1 = norm(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = norm(width)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: the stride sits on the 3x3 conv, as in torchvision."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int, downsample: nn.Module | None, norm: NormFactory):
        super().__init__()
        self.conv1 = _conv1x1(in_ch, width)
        self.bn1 = norm(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = norm(width)
        self.conv3 = _conv1x1(width, width * self.expansion)
        self.bn3 = norm(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetBody(nn.Module):
    """ResNet without pooling/fc. ``forward(x: (B, 3, H, W))`` returns ``[C3, C4, C5]``.

    C3..C5 have strides 8, 16, 32 and ``out_channels`` channels. ``width`` scales every stage
    (64 is torchvision's ResNet; smaller widths make small, fast models). ``layout``: (``basic`` or
    ``bottleneck``, blocks per stage) for a ResNet other than the four ``depth`` names.
    """

    def __init__(self, *, depth: int, norm: NormFactory, width: int = 64,
                 layout: tuple[str, tuple[int, int, int, int]] | None = None) -> None:
        super().__init__()
        if layout is None and depth not in RESNET_SPECS:
            raise ConfigError(f"unsupported ResNet depth {depth}; choose one of {sorted(RESNET_SPECS)}")
        block_type, blocks = layout or RESNET_SPECS[depth]
        block = BasicBlock if block_type == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = norm(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_ch = width
        stage_widths = (width, 2 * width, 4 * width, 8 * width)
        for index, (stage_width, count) in enumerate(zip(stage_widths, blocks)):
            stride = 1 if index == 0 else 2
            layers = []
            for block_index in range(count):
                out_ch = stage_width * block.expansion
                downsample = None
                if block_index == 0 and (stride != 1 or in_ch != out_ch):
                    downsample = nn.Sequential(_conv1x1(in_ch, out_ch, stride), norm(out_ch))
                layers.append(block(in_ch, stage_width, stride if block_index == 0 else 1, downsample, norm))
                in_ch = out_ch
            setattr(self, f"layer{index + 1}", nn.Sequential(*layers))
        self.out_channels = [w * block.expansion for w in stage_widths[1:]]
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c3, c4, c5]


def freeze_stages(body: ResNetBody, trainable_layers: int) -> None:
    """Stop gradients into all but the last ``trainable_layers`` stages (0..5, torchvision's rule).

    5 trains everything including the stem's norm; 0 freezes the whole body.
    """
    if not 0 <= trainable_layers <= 5:
        raise ConfigError(f"trainable_layers must be in 0..5, got {trainable_layers}")
    trainable = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        trainable.append("bn1")
    for name, parameter in body.named_parameters():
        if not any(name.startswith(prefix) for prefix in trainable):
            parameter.requires_grad_(False)
