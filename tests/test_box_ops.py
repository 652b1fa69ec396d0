"""Box coding, IoU and NMS: torch reference, NumPy runtime twin, and brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from retina_edge.model.box_coder import BoxCoder
from retina_edge.model.boxes import batched_nms, box_iou, generalized_box_iou, nms
from retina_edge.config import BoxCoderConfig
from retina_edge.runtime import batched_nms as np_batched_nms
from retina_edge.runtime import decode_boxes
from retina_edge.runtime import nms as np_nms


def random_boxes(n: int, seed: int, size: float = 200.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 2 + 10  # ratios stay under the decode clamp
    return torch.cat([xy, xy + wh], dim=1)


def brute_force_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, thresh: float) -> list[int]:
    """Textbook greedy NMS, one pair at a time."""
    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep: list[int] = []
    for i in order:
        if all(labels[i] != labels[k] or iou(boxes[i], boxes[k]) <= thresh for k in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_box_coder_round_trip(weights):
    coder = BoxCoder(BoxCoderConfig(weights=weights))
    anchors, boxes = random_boxes(500, 0), random_boxes(500, 1)
    deltas = coder.encode(boxes, anchors)
    torch.testing.assert_close(coder.decode(deltas, anchors), boxes, atol=1e-3, rtol=1e-5)


def test_decode_clamps_large_deltas():
    coder = BoxCoder()
    anchors = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    decoded = coder.decode(torch.tensor([[0.0, 0.0, 50.0, 50.0]]), anchors)
    width = decoded[0, 2] - decoded[0, 0]
    assert width == pytest.approx(1000.0, rel=1e-4)  # exp(log(1000/16)) * 16


def test_numpy_decode_equals_torch():
    g = torch.Generator().manual_seed(3)
    anchors, deltas = random_boxes(2000, 2), torch.randn(2000, 4, generator=g) * 2
    expected = BoxCoder().decode(deltas, anchors).numpy()
    np.testing.assert_allclose(decode_boxes(deltas.numpy(), anchors.numpy()), expected, rtol=1e-6, atol=1e-4)


def test_iou_and_giou_known_values():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    assert box_iou(a, b).tolist()[0] == pytest.approx([50 / 150, 0.0])
    # disjoint: GIoU = 0 - (hull - union) / hull = -(900 - 200) / 900
    assert generalized_box_iou(a, b)[0, 1].item() == pytest.approx(-700 / 900)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("thresh", [0.3, 0.5, 0.7])
def test_nms_equals_brute_force(seed, thresh):
    boxes = random_boxes(150, seed)
    g = torch.Generator().manual_seed(100 + seed)
    scores = torch.rand(150, generator=g)
    labels = torch.randint(0, 3, (150,), generator=g)
    expected = brute_force_nms(boxes.numpy(), scores.numpy(), labels.numpy(), thresh)
    assert batched_nms(boxes, scores, labels, thresh).tolist() == expected
    assert np_batched_nms(boxes.numpy(), scores.numpy(), labels.numpy(), thresh).tolist() == expected
    single = brute_force_nms(boxes.numpy(), scores.numpy(), np.zeros(150), thresh)
    assert nms(boxes, scores, thresh).tolist() == single
    assert np_nms(boxes.numpy(), scores.numpy(), thresh).tolist() == single


def test_nms_empty():
    assert nms(torch.zeros((0, 4)), torch.zeros(0), 0.5).numel() == 0
    assert np_batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0), 0.5).size == 0


def test_scale_clamp_default_is_log_1000_over_16():
    assert BoxCoderConfig().scale_clamp == pytest.approx(math.log(1000 / 16))


@pytest.mark.parametrize("seed", range(3))
def test_numpy_nms_large_and_early_stop_equal_torch(seed):
    """Beyond one block (128) and with max_keep: still exactly the greedy answer's prefix."""
    boxes = random_boxes(900, seed, size=400)
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(900, generator=g)
    labels = torch.randint(0, 4, (900,), generator=g)
    full = batched_nms(boxes, scores, labels, 0.5).tolist()
    assert np_batched_nms(boxes.numpy(), scores.numpy(), labels.numpy(), 0.5).tolist() == full
    assert np_batched_nms(boxes.numpy(), scores.numpy(), labels.numpy(), 0.5, max_keep=150).tolist() == full[:150]


def test_empty_boxes_suppress_nothing_like_torchvision():
    boxes = np.array([[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 10, 10]], dtype=np.float32)  # two zero-area boxes
    scores = np.array([0.9, 0.8, 0.7], dtype=np.float32)
    expected = nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5).tolist()
    assert expected == [0, 1, 2]
    assert np_nms(boxes, scores, 0.5).tolist() == expected
