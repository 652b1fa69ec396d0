"""Named architectures, each composed of registered parts, and torchvision-style keyword arguments
-> :class:`ModelConfig` (no torch).

An :class:`Arch` names its backbone, FPN and head builders (:mod:`retina_edge.model.registry`)
and the config it starts from; :func:`register_arch` adds one to :data:`ARCHS`, as torchvision's
model builders and timm's ``register_model`` do (a plugin package does it from its
``retina_edge.plugins`` entry point, see :mod:`retina_edge.registry`). ``build_model``
(:mod:`retina_edge.model.retinanet`), ``model_config``, checkpoint loading and ``retina-edge archs``
read this table; ``resnet50_fpn`` is torchvision's ``retinanet_resnet50_fpn``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from retina_edge.config import ModelConfig, PostprocessConfig, TransformConfig
from retina_edge.errors import ConfigError
from retina_edge.registry import Registry

DEPTHS = (18, 34, 50, 101)


@dataclass(frozen=True)
class Arch:
    """A named architecture. ``variant``: ``v1`` (frozen BN, P6 from P5, plain heads) or ``v2``
    (BN, P6 from C5, GroupNorm heads), as torchvision builds them; ``backbone``/``fpn``/``head``:
    registered builders; ``defaults``: :class:`ModelConfig` fields it sets (before the caller's);
    ``bare_defaults``: what a bare torchvision state dict of it also implies (v1: FrozenBN eps 0)."""

    name: str
    depth: int
    variant: str = "v1"
    backbone: str = "resnet"
    fpn: str = "fpn"
    head: str = "retinanet"
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def bare_defaults(self) -> dict[str, Any]:
        return {"frozen_bn_eps": 0.0} if self.variant == "v1" else {}


#: arch name -> :class:`Arch` (add with :func:`register_arch`).
ARCHS: Registry[Arch] = Registry("arch", error=ConfigError)


def register_arch(arch: Arch, *, replace: bool = False) -> Arch:
    return ARCHS.register(arch.name, arch, replace=replace)


def unregister_arch(name: str) -> None:
    ARCHS.unregister(name)


def get_arch(name: str) -> Arch:
    return ARCHS.get(name)


for _depth in DEPTHS:
    register_arch(Arch(f"resnet{_depth}_fpn", _depth, "v1", description=f"ResNet-{_depth} FPN, torchvision v1 layout"))
    register_arch(Arch(f"resnet{_depth}_fpn_v2", _depth, "v2", description=f"ResNet-{_depth} FPN, torchvision v2 layout"))

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
    spec = get_arch(arch)
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    base = ModelConfig(
        arch=arch, depth=spec.depth, variant=spec.variant, num_classes=num_classes,
        norm="bn" if spec.variant == "v2" else "frozen_bn",
    )
    return apply_overrides(base, **{**spec.defaults, **kwargs})


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
