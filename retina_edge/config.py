"""Model configuration: the one place that says what a RetinaNet is made of.

Everything here is plain Python (no torch) so that the torch-free runtime, the exporter and the
checkpoint files can share it. A :class:`ModelConfig` round-trips through ``to_dict``/``from_dict``
and travels inside checkpoints and ONNX metadata.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from retina_edge._version import __version__
from retina_edge.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AnchorConfig:
    """Anchor layout, defined once for the model, the exporter and the runtime.

    ``sizes`` are the base side lengths (pixels) on P3..P7; each level gets ``size * scale`` for
    every scale (truncated to int, as torchvision does) times every aspect ratio (h/w), giving
    ``len(scales) * len(aspect_ratios)`` anchors per location.
    """

    sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    scales: tuple[float, ...] = (1.0, 2.0 ** (1.0 / 3.0), 2.0 ** (2.0 / 3.0))
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)

    @property
    def num_anchors(self) -> int:
        """Anchors per feature-map location (A)."""
        return len(self.scales) * len(self.aspect_ratios)

    def sizes_per_level(self) -> tuple[tuple[int, ...], ...]:
        """Integer anchor side lengths per level, e.g. ``(32, 40, 50)`` for P3."""
        return tuple(tuple(int(size * scale) for scale in self.scales) for size in self.sizes)


@dataclass(frozen=True)
class BoxCoderConfig:
    """Box coding: deltas are ``(dx*wx, dy*wy, log(w)*ww, log(h)*wh)`` relative to the anchor."""

    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    # torchvision's clamp: exp() of a larger dw/dh would overflow float16 and make absurd boxes.
    scale_clamp: float = math.log(1000.0 / 16)


@dataclass(frozen=True)
class PostprocessConfig:
    """Detection post-processing thresholds (torchvision's names and defaults)."""

    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 300
    topk_candidates: int = 1000


@dataclass(frozen=True)
class TransformConfig:
    """torchvision-style resize/normalise/pad. Sizes are pixels; mean/std apply to RGB in [0, 1]."""

    min_size: int = 800
    max_size: int = 1333
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD
    size_divisible: int = 32


@dataclass(frozen=True)
class LayerWidths:
    """Per-layer channels of a structurally pruned model, where they differ from its architecture's.

    ``layers``: (module path, channels) pairs, the channels as the layer's constructor takes them: a
    conv ``(out, in)``, a BatchNorm ``(channels,)``, a GroupNorm ``(channels, groups)``. Empty: the
    architecture's own widths. :mod:`retina_edge.model.widths` builds a model of these widths and
    checks them against the architecture and the weights.
    """

    layers: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def __post_init__(self) -> None:
        names = [name for name, _ in self.layers]
        if len(set(names)) != len(names):
            raise ConfigError("the widths record names a layer twice")

    def __bool__(self) -> bool:
        return bool(self.layers)

    def __str__(self) -> str:  # configs are compared and shown in errors: a summary, not ~100 layers
        return f"pruned ({len(self.layers)} layers narrowed)" if self.layers else "unpruned"

    def get(self, name: str) -> tuple[int, ...] | None:
        return dict(self.layers).get(name)

    def to_plain(self) -> dict[str, list[int]]:
        return {name: list(channels) for name, channels in self.layers}

    @classmethod
    def from_plain(cls, data: Any, *, source: str = "model config") -> LayerWidths:
        """Inverse of :meth:`to_plain`; a record that is not {layer: [whole numbers >= 1]} is refused."""
        if isinstance(data, LayerWidths):
            return data
        problem = _widths_problem(data)
        if problem:
            raise ConfigError(f"{source} has a damaged widths record: {problem}")
        return cls(tuple((name, tuple(int(n) for n in channels)) for name, channels in data.items()))


def _widths_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return f"a {type(data).__name__}, not a mapping of layer names to channels"
    for name, channels in data.items():
        if not isinstance(name, str) or not name:
            return f"layer name {name!r} is not a module path"
        if (not isinstance(channels, (list, tuple)) or not 1 <= len(channels) <= 2
                or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in channels)):
            return f"{name}: {channels!r} is not one or two whole numbers >= 1"
    return None


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a RetinaNet's architecture and inference behaviour.

    ``variant`` is ``"v1"`` (P6 from P5, plain heads, L1 box loss) or ``"v2"`` (P6 from C5,
    GroupNorm heads, GIoU box loss). ``frozen_bn_eps`` is used when ``norm == "frozen_bn"``.
    ``widths``: the per-layer channels of a pruned model (empty for the architecture's own).
    """

    arch: str = "resnet50_fpn"
    depth: int = 50
    variant: str = "v1"
    num_classes: int = 91
    class_names: tuple[str, ...] = ()
    # Dataset category id of each label; empty means label == id (torchvision's COCO convention).
    category_ids: tuple[int, ...] = ()
    norm: str = "frozen_bn"
    frozen_bn_eps: float = 1e-5
    trainable_layers: int = 3
    # Stem width of the ResNet (torchvision: 64); stages are 1x, 2x, 4x, 8x of it.
    backbone_width: int = 64
    fpn_channels: int = 256
    head_convs: int = 4
    prior_probability: float = 0.01
    fg_iou_thresh: float = 0.5
    bg_iou_thresh: float = 0.4
    allow_low_quality_matches: bool = True
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    box_coder: BoxCoderConfig = field(default_factory=BoxCoderConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    transform: TransformConfig = field(default_factory=TransformConfig)
    widths: LayerWidths = field(default_factory=LayerWidths)

    def class_name(self, label: int) -> str:
        """Display name of a contiguous label (``class_<label>`` when the model has no names)."""
        if 0 <= label < len(self.class_names):
            return self.class_names[label]
        return f"class_{label}"

    def category_id(self, label: int) -> int:
        """Dataset category id of a contiguous label."""
        return category_id_of(label, self.category_ids)

    def labels_for(self, classes: Sequence[str | int]) -> tuple[int, ...]:
        """Contiguous labels of classes named by name or by dataset category id (the numbering every
        output uses); an unknown one is an error listing the model's classes."""
        ids = [self.category_id(label) for label in range(self.num_classes)]
        labels = []
        for value in classes:
            text = str(value)
            if text in self.class_names:
                labels.append(self.class_names.index(text))
            elif text.isdigit() and int(text) in ids:
                labels.append(ids.index(int(text)))
            else:
                known = ", ".join(f"{self.class_name(label)} ({ids[label]})" for label in range(min(self.num_classes, 12)))
                more = " ..." if self.num_classes > 12 else ""
                raise ConfigError(f"unknown class {text!r}; this model's classes (category id) are: {known}{more}")
        return tuple(labels)

    @property
    def box_loss(self) -> str:
        return "giou" if self.variant == "v2" else "l1"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly nested dict (tuples become lists). ``widths`` only where the model is pruned:
        an unpruned model's config reads as before, also by a retina-edge that knows no widths."""
        data = dataclasses.asdict(dataclasses.replace(self, widths=LayerWidths()))
        data.pop("widths")
        if self.widths:
            data["widths"] = self.widths.to_plain()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "model config") -> ModelConfig:
        """Inverse of :meth:`to_dict`. Configs travel inside files, so a field this version does
        not know means the file was written by a newer retina-edge: that is what the error says."""
        nested = {
            "anchors": AnchorConfig,
            "box_coder": BoxCoderConfig,
            "postprocess": PostprocessConfig,
            "transform": TransformConfig,
        }
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        for key, nested_cls in nested.items():
            if isinstance(data.get(key), dict):
                known = {f.name for f in dataclasses.fields(nested_cls)}
                unknown += [f"{key}.{name}" for name in sorted(set(data[key]) - known)]
        if unknown:
            raise ConfigError(f"{source} has model settings this retina-edge ({__version__}) does not know "
                              f"({', '.join(unknown)}): it was written by a newer retina-edge; upgrade to read it")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in nested:
                kwargs[key] = _from_plain(nested[key], value)
            elif key == "widths":
                kwargs[key] = LayerWidths.from_plain(value, source=source)
            else:
                kwargs[key] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)


def category_id_of(label: int, category_ids: Sequence[int]) -> int:
    """Dataset category id of a contiguous label (the label itself when there is no mapping)."""
    return category_ids[label] if category_ids else label


def _from_plain(cls: type, value: Any) -> Any:
    if isinstance(value, cls):
        return value
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})
