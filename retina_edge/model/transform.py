"""torchvision-style input transform: normalise, resize by min/max side, pad to a multiple of 32.

This is the reference model's own transform (variable input size, used for training and for
torchvision parity). The fixed-size letterbox used by deployed models is
``retina_edge.preprocess``; both take RGB float images in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from retina_edge.config import TransformConfig
from retina_edge.errors import DataError


@dataclass
class ImageBatch:
    """Padded batch ``tensors`` (B, 3, H, W) and each image's resized (H, W) inside it."""

    tensors: Tensor
    image_sizes: list[tuple[int, int]]


def resize_scale(height: int, width: int, min_size: int, max_size: int) -> float:
    """Scale making the short side ``min_size`` unless the long side would exceed ``max_size``.

    torchvision's eager arithmetic exactly: Python floats (float64), ``min(min_size / short,
    max_size / long)``. A float32 quotient gives a different output size for many shapes.
    """
    return min(float(min_size) / min(height, width), float(max_size) / max(height, width))


def resized_size(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """(H, W) after the resize: ``int(side * scale)`` in float64, as ``F.interpolate`` computes it
    for ``scale_factor=scale, recompute_scale_factor=True`` (torchvision's call)."""
    scale = resize_scale(height, width, min_size, max_size)
    return int(height * scale), int(width * scale)


def scale_boxes(boxes: Tensor, from_size: tuple[int, int], to_size: tuple[int, int]) -> Tensor:
    """Map x1y1x2y2 ``boxes`` from an image of (H, W) ``from_size`` to one of ``to_size``."""
    ratio_h = torch.tensor(to_size[0], dtype=torch.float32) / torch.tensor(from_size[0], dtype=torch.float32)
    ratio_w = torch.tensor(to_size[1], dtype=torch.float32) / torch.tensor(from_size[1], dtype=torch.float32)
    ratios = torch.stack([ratio_w, ratio_h, ratio_w, ratio_h]).to(boxes.device)
    return boxes * ratios


class RetinaTransform:
    """Callable turning a list of ``(3, H_i, W_i)`` RGB [0, 1] tensors into an :class:`ImageBatch`.

    Training picks ``min_size`` at random from ``train_min_sizes`` when given (scale augmentation).
    """

    def __init__(self, config: TransformConfig, train_min_sizes: tuple[int, ...] = ()) -> None:
        self.config = config
        self.train_min_sizes = train_min_sizes
        self.mean = torch.tensor(config.image_mean, dtype=torch.float32)
        self.std = torch.tensor(config.image_std, dtype=torch.float32)

    def __call__(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None, *, training: bool = False
    ) -> tuple[ImageBatch, list[dict[str, Tensor]] | None]:
        resized, out_targets = [], [] if targets is not None else None
        for index, image in enumerate(images):
            if image.dim() != 3 or image.shape[0] != 3:
                raise DataError(f"image {index} must be a (3, H, W) tensor, got shape {tuple(image.shape)}")
            normalised = (image - self.mean.to(image)[:, None, None]) / self.std.to(image)[:, None, None]
            min_size = self.config.min_size
            if training and self.train_min_sizes:
                min_size = self.train_min_sizes[int(torch.randint(len(self.train_min_sizes), ()).item())]
            # With recompute_scale_factor=True interpolate resamples at input/output size, so giving
            # the size torchvision's scale leads to is the same operation.
            size = resized_size(image.shape[-2], image.shape[-1], min_size, self.config.max_size)
            if min(size) < 1:
                raise DataError(f"image {index} of {image.shape[-2]}x{image.shape[-1]} would resize to "
                                 f"{size[0]}x{size[1]} (min_size {min_size}, max_size {self.config.max_size})")
            out = F.interpolate(normalised[None], size=size, mode="bilinear", align_corners=False)[0]
            resized.append(out)
            if targets is not None:
                target = dict(targets[index])
                target["boxes"] = scale_boxes(target["boxes"], tuple(image.shape[-2:]), tuple(out.shape[-2:]))
                out_targets.append(target)
        return self.batch(resized), out_targets

    def batch(self, images: list[Tensor]) -> ImageBatch:
        """Zero-pad images top-left into one tensor whose H and W are multiples of ``size_divisible``."""
        stride = self.config.size_divisible
        max_h = max(img.shape[-2] for img in images)
        max_w = max(img.shape[-1] for img in images)
        pad_h = (max_h + stride - 1) // stride * stride
        pad_w = (max_w + stride - 1) // stride * stride
        batch = images[0].new_zeros((len(images), 3, pad_h, pad_w))
        for slot, image in zip(batch, images):
            slot[:, : image.shape[-2], : image.shape[-1]].copy_(image)
        return ImageBatch(batch, [(int(img.shape[-2]), int(img.shape[-1])) for img in images])
