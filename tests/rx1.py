"""The fixtures' ``rx1`` weight recipe: every tensor drawn from its own key-seeded generator."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import torch

FIXTURES = Path(__file__).parent / "data" / "torchvision_parity"


def rx1_tensor(key: str, shape: list[int]) -> torch.Tensor:
    """One tensor of the recipe in ``FIXTURES/README.md`` (first matching rule wins)."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()) & 0x7FFFFFFF)
    if key.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    if key.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    if key.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=g)
    if key == "head.classification_head.cls_logits.bias":
        return -3.0 + 0.5 * torch.randn(shape, generator=g)
    if key.endswith("bias"):
        return 0.1 * torch.randn(shape, generator=g)
    if len(shape) == 1:
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    return torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))


def rx1_state_dict(variant: str) -> dict[str, torch.Tensor]:
    """The whole rx1 state dict of ``variant`` ("v1" or "v2"), in torchvision's key order."""
    shapes = json.loads((FIXTURES / f"{variant}_state_dict_keys.json").read_text())
    return {key: rx1_tensor(key, shape) for key, shape in shapes.items()}
