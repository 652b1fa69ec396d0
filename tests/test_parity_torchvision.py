"""Parity with torchvision's own RetinaNet outputs (fixtures recorded with torchvision 0.28)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retina_edge.model.retinanet import build_model
from retina_edge.metrics.matching import match_detections
from rx1 import FIXTURES, rx1_state_dict

CASES = {
    "v1": ("resnet50_fpn", {"frozen_bn_eps": 0.0}),
    "v2": ("resnet50_fpn_v2", {}),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    variant = request.param
    arch, kwargs = CASES[variant]
    model = build_model(arch, num_classes=91, min_size=320, max_size=512, **kwargs).eval()
    model.load_state_dict(rx1_state_dict(variant), strict=True)
    ref = np.load(FIXTURES / f"{variant}.npz")
    images = [torch.from_numpy(ref["image0"]), torch.from_numpy(ref["image1"])]
    with torch.no_grad():
        batch, _ = model.transform(images)
        outputs, feature_shapes = model.head_outputs(batch.tensors)
        detections = model(images)
    return model, ref, batch, outputs, feature_shapes, detections


def test_transform_matches(case):
    _, ref, batch, *_ = case
    assert batch.image_sizes == [tuple(s) for s in ref["image_sizes"].tolist()]
    np.testing.assert_allclose(batch.tensors.numpy(), ref["batched_input"], atol=1e-4, rtol=0)


def test_anchors_match(case):
    model, ref, batch, _, feature_shapes, _ = case
    assert feature_shapes == [tuple(s) for s in ref["feature_shapes"].tolist()]
    anchors = torch.cat(model.anchors(tuple(batch.tensors.shape[-2:]), feature_shapes))
    np.testing.assert_allclose(anchors.numpy(), ref["anchors0"], atol=1e-4, rtol=0)


def test_head_outputs_match(case):
    _, ref, _, outputs, _, _ = case
    np.testing.assert_allclose(outputs["bbox_regression"].numpy(), ref["bbox_regression"], atol=1e-4, rtol=0)
    logits = outputs["cls_logits"]
    np.testing.assert_allclose(logits[:, ::13].numpy(), ref["cls_logits_every13"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(logits.max(dim=2).values.numpy(), ref["cls_logits_rowmax"], atol=1e-4, rtol=0)
    agree = (logits.argmax(dim=2).numpy() == ref["cls_logits_rowargmax"]).mean()
    assert agree > 0.999


def test_detections_match_as_sets(case):
    *_, detections = case
    ref = case[1]
    for index, det in enumerate(detections):
        result = match_detections(
            (ref[f"det{index}_boxes"], ref[f"det{index}_scores"], ref[f"det{index}_labels"]),
            (det["boxes"].numpy(), det["scores"].numpy(), det["labels"].numpy()),
        )
        assert result.num_reference == 300
        assert result.fraction >= 0.99, f"image {index}: {result.matched}/300 matched"
