"""A small untrained RetinaNet for runtime tests: ResNet-18 stem width 16, FPN 32, one head conv,
classification bias raised so that hundreds of candidates clear its 0.2 score threshold."""

from __future__ import annotations

import torch

from retina_edge.model.retinanet import build_model


def tiny_model(class_names: tuple[str, ...] = ("a", "b", "c"), **kwargs):  # noqa: ANN003, ANN201
    torch.manual_seed(0)
    options = {"backbone_width": 16, "fpn_channels": 32, "head_convs": 1, "score_thresh": 0.2, **kwargs}
    model = build_model("resnet18_fpn", num_classes=len(class_names), class_names=class_names, **options).eval()
    with torch.no_grad():
        model.head.classification_head.cls_logits.bias.add_(3.5)
    return model
