"""PyTorch side of the data: a Dataset over a :class:`CocoIndex`, flip augmentation, collation."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from retina_edge.coco_dataset import CocoIndex
from retina_edge.imageio import read_image_rgb


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 RGB -> ``(3, H, W)`` float32 in [0, 1], the reference model's input."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


class DetectionDataset(Dataset):
    """Items are ``(image (3, H, W) float [0, 1], {"boxes": (G, 4) x1y1x2y2, "labels": (G,), "image_id"})``.

    ``hflip_prob`` > 0 flips images (and boxes) at random: use it for training only.
    """

    def __init__(self, index: CocoIndex, *, hflip_prob: float = 0.0) -> None:
        self.index = index
        self.hflip_prob = hflip_prob

    def __len__(self) -> int:
        return len(self.index.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        record = self.index.images[i]
        image = image_to_tensor(read_image_rgb(record.path))
        boxes = torch.from_numpy(record.boxes.copy())
        if self.hflip_prob > 0 and torch.rand(()) < self.hflip_prob:
            image = image.flip(-1)
            width = image.shape[-1]
            boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
        target = {"boxes": boxes, "labels": torch.from_numpy(record.labels.copy()),
                  "image_id": torch.tensor(record.image_id)}
        return image, target


def collate(batch: list) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Keep images as a list: the model's transform resizes and pads them into one batch."""
    images, targets = zip(*batch)
    return list(images), list(targets)
