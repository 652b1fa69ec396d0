"""Anchor layout: counts per level, placement, and the feature-shape arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from retina_edge.anchors import cell_anchors, feature_shapes_for, grid_anchors
from retina_edge.config import AnchorConfig


def test_sizes_per_level_follow_torchvision():
    assert AnchorConfig().sizes_per_level()[0] == (32, 40, 50)
    assert AnchorConfig().sizes_per_level()[-1] == (512, 645, 812)


def test_cell_anchors_ratio_major_and_rounded():
    base = cell_anchors((32, 40, 50), (0.5, 1.0, 2.0))
    assert base.shape == (9, 4)
    np.testing.assert_array_equal(base[3], [-16, -16, 16, 16])  # ratio 1, scale 32
    widths, heights = base[:, 2] - base[:, 0], base[:, 3] - base[:, 1]
    assert np.all(widths[:3] > heights[:3]) and np.all(widths[6:] < heights[6:])  # h/w = 0.5 first
    assert np.all(base == np.round(base))


@pytest.mark.parametrize("size", [(512, 512), (480, 448), (320, 640), (33, 65)])
def test_anchor_count_per_level(size):
    shapes = feature_shapes_for(size)
    levels = grid_anchors(shapes, size, AnchorConfig())
    assert [len(level) for level in levels] == [h * w * 9 for h, w in shapes]


def test_feature_shapes_are_ceil_halvings():
    assert feature_shapes_for((480, 448)) == [(60, 56), (30, 28), (15, 14), (8, 7), (4, 4)]
    assert feature_shapes_for((512, 512)) == [(64, 64), (32, 32), (16, 16), (8, 8), (4, 4)]


def test_anchor_centres_step_by_stride():
    levels = grid_anchors(feature_shapes_for((64, 64)), (64, 64), AnchorConfig())
    p3 = levels[0].reshape(8, 8, 9, 4)
    centres_x = (p3[..., 0] + p3[..., 2]) / 2
    np.testing.assert_allclose(np.diff(centres_x[0, :, 3]), 8.0)


def test_level_mismatch_is_an_error():
    with pytest.raises(ValueError, match="5 levels"):
        grid_anchors([(8, 8)], (64, 64), AnchorConfig())
