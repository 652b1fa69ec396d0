"""Parity with torchvision itself, run live where it imports (CPU everywhere, CUDA where a GPU is).

The recorded fixtures (``test_parity_torchvision.py``) pin two images; here torchvision's own
classes are built beside ours with the same ``rx1`` weights and swept over what fixtures cannot
hold: many image sizes through the resize, the losses in training mode, NMS and box decoding on
random inputs, and the whole model on the GPU. Skipped where torchvision cannot be imported (the
CPU machines this project's CI runs on); run on a machine that has it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

torchvision = pytest.importorskip("torchvision")

from torchvision.models.detection import RetinaNet, retinanet_resnet50_fpn_v2  # noqa: E402
from torchvision.models.detection._utils import BoxCoder as TvBoxCoder, overwrite_eps  # noqa: E402
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor  # noqa: E402
from torchvision.models.detection.transform import GeneralizedRCNNTransform  # noqa: E402
from torchvision.ops.feature_pyramid_network import LastLevelP6P7  # noqa: E402
from torchvision.ops.misc import FrozenBatchNorm2d  # noqa: E402

from retina_edge.model import boxes as torch_boxes  # noqa: E402
from retina_edge.model.retinanet import build_model  # noqa: E402
from retina_edge.model.box_coder import BoxCoder  # noqa: E402
from retina_edge.config import IMAGENET_MEAN, IMAGENET_STD, TransformConfig  # noqa: E402
from retina_edge.metrics.matching import match_detections  # noqa: E402
from retina_edge.runtime.core.nms import batched_nms as numpy_batched_nms, nms as numpy_nms  # noqa: E402
from retina_edge.model.transform import RetinaTransform  # noqa: E402
from rx1 import rx1_state_dict  # noqa: E402

ARCHS = {"v1": ("resnet50_fpn", {"frozen_bn_eps": 0.0}), "v2": ("resnet50_fpn_v2", {})}
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")])]


def torchvision_retinanet(variant: str) -> torch.nn.Module:
    """torchvision's RetinaNet as its builders make it for the COCO_V1 checkpoints (no download)."""
    if variant == "v1":
        body = torchvision.models.resnet50(norm_layer=FrozenBatchNorm2d)
        backbone = _resnet_fpn_extractor(body, 3, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
        model = RetinaNet(backbone, 91, min_size=320, max_size=512)
        overwrite_eps(model, 0.0)
    else:
        model = retinanet_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=91, min_size=320,
                                          max_size=512)
    model.load_state_dict(rx1_state_dict(variant), strict=True)
    return model


def ours(variant: str) -> torch.nn.Module:
    arch, kwargs = ARCHS[variant]
    model = build_model(arch, num_classes=91, min_size=320, max_size=512, **kwargs)
    model.load_state_dict(rx1_state_dict(variant), strict=True)
    return model


def random_images(seed: int, sizes) -> list[torch.Tensor]:  # noqa: ANN001
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand((3, h, w), generator=generator) for h, w in sizes]


@pytest.fixture(autouse=True)
def exact_cuda_math():
    """TF32 convolutions would make both models differ from themselves run to run."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize(("min_size", "max_size"), [(320, 512), (800, 1333), (512, 512)])
def test_resize_sweep_matches_generalized_rcnn_transform(min_size, max_size):
    reference = GeneralizedRCNNTransform(min_size, max_size, list(IMAGENET_MEAN), list(IMAGENET_STD))
    transform = RetinaTransform(TransformConfig(min_size=min_size, max_size=max_size))
    rng = np.random.default_rng(min_size + max_size)
    sizes = [tuple(int(v) for v in rng.integers(17, 700, 2)) for _ in range(60)] + [(333, 500), (500, 333), (427, 640)]
    for start in range(0, len(sizes), 3):
        images = random_images(start, sizes[start : start + 3])
        expected, _ = reference.eval()(images)
        got, _ = transform(images)
        assert got.image_sizes == [tuple(size) for size in expected.image_sizes], sizes[start : start + 3]
        torch.testing.assert_close(got.tensors, expected.tensors, atol=1e-6, rtol=0)


@pytest.mark.parametrize("variant", sorted(ARCHS))
@pytest.mark.parametrize("device", DEVICES)
def test_detections_and_head_outputs_match(variant, device):
    reference, model = torchvision_retinanet(variant).eval().to(device), ours(variant).eval().to(device)
    images = [image.to(device) for image in random_images(1, [(240, 320), (300, 200), (333, 517)])]
    with torch.no_grad():
        batch, _ = reference.transform(images)
        features = list(reference.backbone(batch.tensors).values())
        expected_raw = reference.head(features)
        got_raw, _ = model.head_outputs(batch.tensors)
        expected, got = reference(images), model(images)
    for name in ("cls_logits", "bbox_regression"):
        torch.testing.assert_close(got_raw[name], expected_raw[name], atol=1e-4, rtol=0)
    for index, (ref, det) in enumerate(zip(expected, got)):
        result = match_detections(tuple(ref[key].cpu().numpy() for key in ("boxes", "scores", "labels")),
                                  tuple(det[key].cpu().numpy() for key in ("boxes", "scores", "labels")))
        assert result.num_reference > 0 and result.fraction >= 0.99, f"image {index}: {result.matched}/{result.num_reference}"


@pytest.mark.parametrize("variant", sorted(ARCHS))
def test_training_losses_match(variant):
    reference, model = torchvision_retinanet(variant).train(), ours(variant).train()
    images = random_images(2, [(240, 320), (300, 200)])
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 120.0, 200.0], [150.0, 30.0, 300.0, 90.0]]),
                "labels": torch.tensor([1, 17])},
               {"boxes": torch.tensor([[5.0, 5.0, 60.0, 250.0]]), "labels": torch.tensor([44])}]
    expected = reference(images, [dict(t) for t in targets])
    got = model(images, [dict(t) for t in targets])
    assert set(got) == set(expected)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("iou", [0.3, 0.5, 0.7])
def test_nms_twins_match_torchvision_ops(iou):
    generator = torch.Generator().manual_seed(int(iou * 10))
    corners = torch.rand((600, 2), generator=generator) * 400
    sizes = torch.rand((600, 2), generator=generator) * 80 + 1
    boxes = torch.cat([corners, corners + sizes], dim=1)
    scores = torch.rand(600, generator=generator)  # continuous: no ties, so the order is defined
    labels = torch.randint(0, 5, (600,), generator=generator)
    expected = torchvision.ops.batched_nms(boxes, scores, labels, iou).numpy()
    np.testing.assert_array_equal(torch_boxes.batched_nms(boxes, scores, labels, iou).numpy(), expected)
    np.testing.assert_array_equal(numpy_batched_nms(boxes.numpy(), scores.numpy(), labels.numpy(), iou), expected)
    np.testing.assert_array_equal(numpy_nms(boxes.numpy(), scores.numpy(), iou), torchvision.ops.nms(boxes, scores, iou).numpy())


def test_box_decoding_matches_torchvision_box_coder():
    generator = torch.Generator().manual_seed(3)
    anchors = torch.cat([torch.rand((500, 2), generator=generator) * 300, torch.zeros(500, 2)], dim=1)
    anchors[:, 2:] = anchors[:, :2] + torch.rand((500, 2), generator=generator) * 200 + 8
    deltas = torch.randn((500, 4), generator=generator) * 3  # some past the log(1000/16) clamp
    expected = TvBoxCoder(weights=(1.0, 1.0, 1.0, 1.0)).decode_single(deltas, anchors)
    torch.testing.assert_close(BoxCoder().decode(deltas, anchors), expected, atol=0, rtol=0)
