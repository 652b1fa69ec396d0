"""PyTorch twin of :mod:`retina_edge.preprocess` for the reference side (CPU or GPU batches).

Same geometry (it calls :func:`letterbox_geometry`), same operation order, so it gives the NumPy
version's numbers to float rounding: within 1/32 of an 8-bit grey level on large downscales, where
OpenCV and PyTorch compute sampling positions in different precision (``tests/test_preprocess.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from retina_edge.preprocess import LetterboxInfo, PreprocessConfig, check_image, letterbox_geometry


def preprocess_tensor(image: np.ndarray | torch.Tensor, config: PreprocessConfig, *, device: str | torch.device = "cpu") -> tuple[torch.Tensor, LetterboxInfo]:
    """``(H, W, 3)`` uint8 RGB (array or tensor) -> ``(3, H_in, W_in)`` float32 normalised tensor."""
    if isinstance(image, np.ndarray):
        check_image(image)
        image = torch.from_numpy(image)
    info = letterbox_geometry(tuple(image.shape[:2]), config)
    new_h, new_w = info.resized_size
    scaled = image.to(device).permute(2, 0, 1).float() * (1.0 / 255.0)
    if (new_h, new_w) != tuple(image.shape[:2]):
        scaled = F.interpolate(scaled[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
    mean = torch.tensor(config.mean, dtype=torch.float32, device=scaled.device)[:, None, None]
    std = torch.tensor(config.std, dtype=torch.float32, device=scaled.device)[:, None, None]
    out = torch.zeros((3, config.height, config.width), dtype=torch.float32, device=scaled.device)
    out[:, info.pad_y : info.pad_y + new_h, info.pad_x : info.pad_x + new_w] = (scaled - mean) / std
    return out, info


def preprocess_tensor_batch(images: Sequence[np.ndarray], config: PreprocessConfig, *, device: str | torch.device = "cpu") -> tuple[torch.Tensor, list[LetterboxInfo]]:
    """Batch of :func:`preprocess_tensor`: ``(B, 3, H_in, W_in)`` and one info per image."""
    pairs = [preprocess_tensor(image, config, device=device) for image in images]
    return torch.stack([p[0] for p in pairs]), [p[1] for p in pairs]
