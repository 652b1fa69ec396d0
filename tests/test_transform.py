"""The reference transform against torchvision's own arithmetic: resize sizes, interpolation, boxes.

torchvision cannot be imported here, so its two functions are written below as torchvision 0.28
writes them (eager path of ``_resize_image_and_masks`` and ``resize_boxes`` in
``torchvision/models/detection/transform.py``) and our transform is swept against them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retina_edge.config import TransformConfig
from retina_edge.model.transform import RetinaTransform, resized_size, scale_boxes


def torchvision_resize(image: torch.Tensor, self_min_size: int, self_max_size: int) -> torch.Tensor:
    """torchvision's eager resize: Python-float scale, interpolate recomputing the scale factor."""
    size, self_max_size = float(self_min_size), float(self_max_size)
    im_shape = image.shape[-2:]
    min_size = min(im_shape)
    max_size = max(im_shape)
    scale_factor = min(size / min_size, self_max_size / max_size)
    return torch.nn.functional.interpolate(image[None], size=None, scale_factor=scale_factor, mode="bilinear",
                                           recompute_scale_factor=True, align_corners=False)[0]


def torchvision_resize_boxes(boxes: torch.Tensor, original_size, new_size) -> torch.Tensor:  # noqa: ANN001
    ratios = [torch.tensor(s, dtype=torch.float32) / torch.tensor(s_orig, dtype=torch.float32)
              for s, s_orig in zip(new_size, original_size)]
    ratio_height, ratio_width = ratios
    xmin, ymin, xmax, ymax = boxes.unbind(1)
    return torch.stack((xmin * ratio_width, ymin * ratio_height, xmax * ratio_width, ymax * ratio_height), dim=1)


def sweep(count: int, seed: int = 0) -> list[tuple[int, int, int, int]]:
    """(height, width, min_size, max_size): ordinary, non-square, thin and tiny images."""
    rng = np.random.default_rng(seed)
    cases = []
    for index in range(count):
        kind = index % 4
        if kind == 0:
            h, w = rng.integers(100, 1400, size=2)
        elif kind == 1:  # thin
            h, w = rng.integers(1, 24), rng.integers(200, 2000)
        elif kind == 2:  # tiny
            h, w = rng.integers(1, 40, size=2)
        else:
            h, w = rng.integers(16, 900, size=2)
        if rng.random() < 0.5:
            h, w = w, h
        min_size = int(rng.integers(64, 1000))
        max_size = int(rng.choice([min_size, min_size + int(rng.integers(1, 800))]))
        cases.append((int(h), int(w), min_size, max_size))
    return cases


# The shapes the issue found (float32 scale: 389x479 and 172x639), and the fixtures' two images.
NAMED = [(619, 762, 480, 480, (389, 480)), (123, 457, 288, 640, (172, 640)),
         (240, 320, 320, 512, (320, 426)), (300, 200, 320, 512, (480, 320))]


@pytest.mark.parametrize("height,width,min_size,max_size,expected", NAMED)
def test_named_shapes_resize_as_torchvision(height, width, min_size, max_size, expected):
    assert resized_size(height, width, min_size, max_size) == expected
    batch, _ = RetinaTransform(TransformConfig(min_size=min_size, max_size=max_size))([torch.rand(3, height, width)])
    assert batch.image_sizes == [expected]


def test_resize_sizes_sweep_matches_torchvision():
    """2,400 combinations: our size formula against torchvision's interpolate call itself."""
    mismatches = []
    for height, width, min_size, max_size in sweep(2400):
        try:
            theirs = tuple(torchvision_resize(torch.empty(1, height, width), min_size, max_size).shape[-2:])
        except RuntimeError:  # a side rounds to 0: torchvision cannot resize it either
            theirs = None
        ours = resized_size(height, width, min_size, max_size)
        if (theirs is None and min(ours) > 0) or (theirs is not None and ours != theirs):
            mismatches.append((height, width, min_size, max_size, theirs))
    assert not mismatches, f"{len(mismatches)} shapes differ, e.g. {mismatches[:3]}"


def test_transform_pixels_sweep_match_torchvision():
    """Whole transform (normalise, resize, pad) against torchvision's resize on sampled shapes."""
    config = TransformConfig(image_mean=(0.0, 0.0, 0.0), image_std=(1.0, 1.0, 1.0))
    generator = torch.Generator().manual_seed(0)
    for height, width, min_size, max_size in sweep(120, seed=1):
        if max(height, width) * min_size / min(height, width) > 4000:
            continue  # keep the sampled images small
        transform = RetinaTransform(TransformConfig(min_size=min_size, max_size=max_size, image_mean=config.image_mean,
                                                    image_std=config.image_std))
        image = torch.rand(3, height, width, generator=generator)
        batch, _ = transform([image])
        expected = torchvision_resize(image, min_size, max_size)
        got = batch.tensors[0, :, : expected.shape[-2], : expected.shape[-1]]
        assert batch.image_sizes[0] == tuple(expected.shape[-2:])
        torch.testing.assert_close(got, expected, atol=0, rtol=0)


def test_image_too_thin_to_resize_is_a_clear_error():
    with pytest.raises(ValueError, match=r"1226x2 .* 442x0"):
        RetinaTransform(TransformConfig(min_size=800, max_size=442))([torch.rand(3, 1226, 2)])


def test_resize_boxes_sweep_matches_torchvision():
    rng = np.random.default_rng(2)
    for height, width, min_size, max_size in sweep(2000, seed=3):
        new = resized_size(height, width, min_size, max_size)
        if min(new) == 0:
            continue
        boxes = torch.from_numpy(rng.uniform(0, max(new), size=(5, 4)).astype(np.float32))
        torch.testing.assert_close(scale_boxes(boxes, new, (height, width)),
                                   torchvision_resize_boxes(boxes, new, (height, width)), atol=0, rtol=0)


@pytest.mark.parametrize("shape,expected", [((240, 320), (320, 426)), ((300, 200), (480, 320)), ((100, 1000), (51, 512))])
def test_resize_respects_min_and_max(shape, expected):
    transform = RetinaTransform(TransformConfig(min_size=320, max_size=512))
    batch, _ = transform([torch.rand(3, *shape)])
    assert batch.image_sizes == [expected]
    assert all(s % 32 == 0 for s in batch.tensors.shape[-2:])


def test_boxes_round_trip_through_resize():
    transform = RetinaTransform(TransformConfig(min_size=320, max_size=512))
    boxes = torch.tensor([[10.0, 20.0, 100.0, 150.0]])
    batch, targets = transform([torch.rand(3, 301, 199)], [{"boxes": boxes, "labels": torch.tensor([0])}])
    back = scale_boxes(targets[0]["boxes"], batch.image_sizes[0], (301, 199))
    torch.testing.assert_close(back, boxes, atol=1e-3, rtol=0)


def test_bad_image_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        RetinaTransform(TransformConfig())([torch.rand(64, 64)])
