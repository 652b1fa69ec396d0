"""PyTorch side of the data: a Dataset over a :class:`CocoIndex`, flip augmentation, collation."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from retina_edge.data.coco_dataset import CocoIndex
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

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``key``: an index, or (index, augmentation seed) as :class:`EpochSampler` yields them, so a
        sample's flip depends on its seed alone (not on which worker, or which run, loads it)."""
        i, seed = key if isinstance(key, tuple) else (key, None)
        record = self.index.images[i]
        image = image_to_tensor(read_image_rgb(record.path))
        boxes = torch.from_numpy(record.boxes.copy())
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        if self.hflip_prob > 0 and torch.rand((), generator=generator) < self.hflip_prob:
            image = image.flip(-1)
            width = image.shape[-1]
            boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
        target = {"boxes": boxes, "labels": torch.from_numpy(record.labels.copy()),
                  "image_id": torch.tensor(record.image_id)}
        return image, target


class EpochSampler(Sampler):
    """This rank's ``(index, augmentation seed)`` keys for one epoch: a permutation and seeds drawn
    from (``seed``, epoch) alone, sharded over ``world`` ranks as DistributedSampler does, less the
    ``skip`` first keys (the part of the epoch a resumed run already trained on). A run stopped
    anywhere and resumed sees exactly the samples, in the order and with the flips, of one that
    was never stopped."""

    def __init__(self, size: int, *, seed: int, rank: int = 0, world: int = 1) -> None:
        self.size, self.seed, self.rank, self.world = size, seed, rank, world
        self.epoch = self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _keys(self) -> list[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        seeds = torch.randint(2**31 - 1, (self.size,), generator=generator).tolist()
        keys = list(zip(order, seeds))
        keys += keys[: -len(keys) % self.world]  # pad to a multiple of world, as DistributedSampler does
        return keys[self.rank :: self.world]

    def __iter__(self):  # noqa: ANN204
        return iter(self._keys()[self.skip :])

    def __len__(self) -> int:
        return max(0, -(-self.size // self.world) - self.skip)


def collate(batch: list) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Keep images as a list: the model's transform resizes and pads them into one batch."""
    images, targets = zip(*batch)
    return list(images), list(targets)
