"""Named architectures and torchvision-style keyword arguments -> :class:`ModelConfig` (no torch)."""

from __future__ import annotations

import dataclasses
from typing import Any

from retina_edge.errors import ConfigError
from retina_edge.config import ModelConfig, PostprocessConfig, TransformConfig

DEPTHS = (18, 34, 50, 101)

#: arch name -> (depth, variant). ``resnet50_fpn`` is torchvision's ``retinanet_resnet50_fpn``.
ARCHS: dict[str, tuple[int, str]] = {
    **{f"resnet{d}_fpn": (d, "v1") for d in DEPTHS},
    **{f"resnet{d}_fpn_v2": (d, "v2") for d in DEPTHS},
}

# torchvision's constructor keywords, routed to the nested config they belong to.
_TRANSFORM_KEYS = {f.name for f in dataclasses.fields(TransformConfig)}
_POSTPROCESS_KEYS = {f.name for f in dataclasses.fields(PostprocessConfig)}
_ANCHOR_KEYS = {"anchor_sizes": "sizes", "anchor_scales": "scales", "aspect_ratios": "aspect_ratios"}
_ALIASES = {"trainable_backbone_layers": "trainable_layers"}


def model_config(arch: str, *, num_classes: int = 91, **kwargs: Any) -> ModelConfig:
    """Config of a named architecture, overridden by torchvision-style keywords.

    Example: ``model_config("resnet50_fpn_v2", num_classes=91, min_size=320, score_thresh=0.3)``.
    v1 archs use frozen BatchNorm and plain heads; v2 archs use BatchNorm, P6 from C5 and
    GroupNorm heads, as torchvision builds them.
    """
    if arch not in ARCHS:
        raise ConfigError(f"unknown arch {arch!r}; choose one of: {', '.join(ARCHS)}")
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    depth, variant = ARCHS[arch]
    base = ModelConfig(
        arch=arch, depth=depth, variant=variant, num_classes=num_classes,
        norm="bn" if variant == "v2" else "frozen_bn",
    )
    return apply_overrides(base, **kwargs)


def apply_overrides(config: ModelConfig, **kwargs: Any) -> ModelConfig:
    """``config`` with torchvision-style keywords applied (``min_size``, ``score_thresh``, ...)."""
    transform, postprocess, anchors, top = {}, {}, {}, {}
    for key, value in kwargs.items():
        key = _ALIASES.get(key, key)
        if isinstance(value, list):
            value = tuple(value)
        if key in _TRANSFORM_KEYS:
            transform[key] = value
        elif key in _POSTPROCESS_KEYS:
            postprocess[key] = value
        elif key in _ANCHOR_KEYS:
            anchors[_ANCHOR_KEYS[key]] = value
        else:
            top[key] = value
    try:
        return dataclasses.replace(
            config,
            transform=dataclasses.replace(config.transform, **transform),
            postprocess=dataclasses.replace(config.postprocess, **postprocess),
            anchors=dataclasses.replace(config.anchors, **anchors),
            **top,
        )
    except TypeError as error:
        raise ConfigError(f"bad model option for {config.arch}: {error}") from None


def build_model(arch: str, *, num_classes: int = 91, **kwargs: Any):  # noqa: ANN201 (torch type)
    """Build an untrained :class:`retina_edge.model.retinanet.RetinaNet` (see :func:`model_config`)."""
    from retina_edge.model.retinanet import RetinaNet

    return RetinaNet(model_config(arch, num_classes=num_classes, **kwargs))
