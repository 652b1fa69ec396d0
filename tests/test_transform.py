"""The reference transform: sizes, padding, and boxes mapped back to the source image."""

from __future__ import annotations

import pytest
import torch

from retina_edge.config import TransformConfig
from retina_edge.transform import RetinaTransform, resize_scale, scale_boxes


@pytest.mark.parametrize("shape,expected", [((240, 320), (320, 426)), ((300, 200), (480, 320)), ((100, 1000), (51, 512))])
def test_resize_respects_min_and_max(shape, expected):
    transform = RetinaTransform(TransformConfig(min_size=320, max_size=512))
    batch, _ = transform([torch.rand(3, *shape)])
    assert batch.image_sizes == [expected]
    assert all(s % 32 == 0 for s in batch.tensors.shape[-2:])


def test_resize_scale_is_correctly_rounded():
    assert resize_scale(300, 200, 320, 512) == pytest.approx(1.6, abs=1e-7)
    assert int(300 * resize_scale(300, 200, 320, 512)) == 480


def test_boxes_round_trip_through_resize():
    transform = RetinaTransform(TransformConfig(min_size=320, max_size=512))
    boxes = torch.tensor([[10.0, 20.0, 100.0, 150.0]])
    batch, targets = transform([torch.rand(3, 301, 199)], [{"boxes": boxes, "labels": torch.tensor([0])}])
    back = scale_boxes(targets[0]["boxes"], batch.image_sizes[0], (301, 199))
    torch.testing.assert_close(back, boxes, atol=1e-3, rtol=0)


def test_bad_image_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        RetinaTransform(TransformConfig())([torch.rand(64, 64)])
