"""Named builders of the model's parts (backbone, FPN, head), as detectron2's registries and timm's
``register_model`` hold them (no torch here: builders import it when called).

    @BACKBONES.register("mynet")
    def build_mynet(config: ModelConfig, norm) -> nn.Module:   # returns [C3, C4, C5], has .out_channels
        ...

An architecture (:mod:`retina_edge.model.archs`) names one builder of each part. Each table is a
:class:`retina_edge.registry.Registry`: a plugin package registers its parts like the built-ins.
"""

from __future__ import annotations

from retina_edge.errors import ConfigError
from retina_edge.registry import Registry

#: ``builder(config, norm) -> module``: ``forward((B, 3, H, W)) -> [C3, C4, C5]``, ``out_channels`` of each.
BACKBONES = Registry("backbone", error=ConfigError)
#: ``builder(config, in_channels) -> module``: ``forward([C3, C4, C5]) -> [P3..P7]``.
FPNS = Registry("FPN", error=ConfigError)
#: ``builder(config) -> module``: ``forward([P3..P7]) -> {"cls_logits": (B, N, K), "bbox_regression": (B, N, 4)}``.
HEADS = Registry("head", error=ConfigError)
