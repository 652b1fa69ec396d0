"""Anchor generation in NumPy: the single definition used by the model, the exporter and the runtime.

It reproduces torchvision's ``AnchorGenerator`` bit for bit: base anchors are computed in float32
and rounded to integers; each level's stride is ``padded_image_size // feature_size`` (integer
division, so P7 of a 480-pixel-high input has stride 120, not 128); anchors are ordered
(H, W, A) within a level with A = ratio-major (for each aspect ratio, every scale), and the levels
are concatenated P3..P7. Boxes are x1y1x2y2 in pixels of the padded network input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from retina_edge.config import AnchorConfig


def cell_anchors(sizes: Sequence[int], aspect_ratios: Sequence[float]) -> np.ndarray:
    """Zero-centred anchors of one level.

    Returns: float32 array ``(len(aspect_ratios) * len(sizes), 4)``, x1y1x2y2, ratio-major order.
    """
    scales = np.asarray(sizes, dtype=np.float32)
    ratios = np.asarray(aspect_ratios, dtype=np.float32)
    h_ratios = np.sqrt(ratios)
    w_ratios = np.float32(1.0) / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    base = np.stack([-ws, -hs, ws, hs], axis=1) / np.float32(2.0)
    return np.round(base).astype(np.float32)


def level_strides(
    feature_shapes: Sequence[tuple[int, int]], image_size: tuple[int, int]
) -> list[tuple[int, int]]:
    """(stride_h, stride_w) per level, as torchvision derives them from the padded input size."""
    return [(image_size[0] // h, image_size[1] // w) for h, w in feature_shapes]


def grid_anchors(
    feature_shapes: Sequence[tuple[int, int]],
    image_size: tuple[int, int],
    config: AnchorConfig,
) -> list[np.ndarray]:
    """Anchors of every level for one padded input.

    Args:
        feature_shapes: (H, W) of P3..P7.
        image_size: (H, W) of the padded network input in pixels.
        config: the anchor layout.

    Returns: one float32 array ``(H * W * A, 4)`` per level, x1y1x2y2 pixels.
    """
    sizes_per_level = config.sizes_per_level()
    if len(sizes_per_level) != len(feature_shapes):
        raise ValueError(
            f"{len(feature_shapes)} feature maps but anchors configured for {len(sizes_per_level)} levels"
        )
    anchors = []
    strides = level_strides(feature_shapes, image_size)
    for (height, width), (stride_h, stride_w), sizes in zip(feature_shapes, strides, sizes_per_level):
        base = cell_anchors(sizes, config.aspect_ratios)
        shifts_x = np.arange(width, dtype=np.int64) * stride_w
        shifts_y = np.arange(height, dtype=np.int64) * stride_h
        shift_y, shift_x = np.meshgrid(shifts_y, shifts_x, indexing="ij")
        shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
        shifts = np.stack([shift_x, shift_y, shift_x, shift_y], axis=1).astype(np.float32)
        anchors.append((shifts[:, None, :] + base[None, :, :]).reshape(-1, 4))
    return anchors


def feature_shapes_for(image_size: tuple[int, int], num_levels: int = 5) -> list[tuple[int, int]]:
    """(H, W) of P3.. for a padded input, following the stride-2 convs (kernel 3/7, padding 1/3).

    Every stride-2 stage of ResNet and of the P6/P7 convs maps n -> ceil(n / 2); P3 is input / 8.
    """
    height, width = image_size
    shapes = []
    for level in range(3, 3 + num_levels):
        for _ in range(level if not shapes else 1):
            height, width = (height + 1) // 2, (width + 1) // 2
        shapes.append((height, width))
    return shapes
