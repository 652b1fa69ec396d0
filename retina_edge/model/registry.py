"""Named builders of the model's parts (backbone, FPN, head), as detectron2's registries and timm's
``register_model`` hold them (no torch here: builders import it when called).

    @BACKBONES.register("mynet")
    def build_mynet(config: ModelConfig, norm) -> nn.Module:   # returns [C3, C4, C5], has .out_channels
        ...

An architecture (:mod:`retina_edge.model.archs`) names one builder of each part.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from retina_edge.errors import ConfigError


class Registry:
    """Name -> builder, for one kind of part. ``register(name)`` is a decorator (or call it with the builder)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._builders: dict[str, Callable[..., Any]] = {}

    def register(self, name: str, builder: Callable[..., Any] | None = None, *, replace: bool = False):  # noqa: ANN201
        def add(function: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._builders and not replace:
                raise ConfigError(f"a {self.kind} named {name!r} is already registered")
            self._builders[name] = function
            return function

        return add(builder) if builder is not None else add

    def unregister(self, name: str) -> None:
        self._builders.pop(name, None)

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._builders:
            raise ConfigError(f"unknown {self.kind} {name!r}; registered: {', '.join(self._builders)}")
        return self._builders[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._builders)


#: ``builder(config, norm) -> module``: ``forward((B, 3, H, W)) -> [C3, C4, C5]``, ``out_channels`` of each.
BACKBONES = Registry("backbone")
#: ``builder(config, in_channels) -> module``: ``forward([C3, C4, C5]) -> [P3..P7]``.
FPNS = Registry("FPN")
#: ``builder(config) -> module``: ``forward([P3..P7]) -> {"cls_logits": (B, N, K), "bbox_regression": (B, N, 4)}``.
HEADS = Registry("head")
