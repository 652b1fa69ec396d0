"""Saving and loading weights: our checkpoints, torchvision's files and names, ImageNet backbones.

Every ``torch.load`` here uses ``weights_only=True``: a checkpoint is data, never code.

Weight specs accepted by :func:`load_model` (and by every ``--weights`` option):

- a path to a retina-edge checkpoint (config, class names and preprocessing inside);
- a path to a bare torchvision state dict (the arch and class count are read from its shapes,
  or given with ``arch=`` / ``num_classes=``);
- ``torchvision:retinanet_resnet50_fpn`` or ``torchvision:retinanet_resnet50_fpn_v2`` (COCO);
- ``preset:NAME`` for the toolkit's own presets (see ``retina_edge.presets``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from retina_edge.model.archs import apply_overrides, get_arch, model_config
from retina_edge.atomic import atomic_path
from retina_edge.coco import COCO_91_CLASSES
from retina_edge.config import ModelConfig
from retina_edge.errors import WeightsError
from retina_edge.model.retinanet import RetinaNet
from retina_edge.model.widths import check_widths

logger = logging.getLogger(__name__)
CHECKPOINT_FORMAT = "retina-edge-checkpoint"
CHECKPOINT_VERSION = 1

_DOWNLOAD_ROOT = "https://download.pytorch.org/models/"

#: torchvision COCO detection weights: name -> (file, arch, config overrides).
TORCHVISION_DETECTION_WEIGHTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    # torchvision overwrites FrozenBatchNorm eps to 0 for its v1 COCO detection weights.
    "retinanet_resnet50_fpn": ("retinanet_resnet50_fpn_coco-eeacb38b.pth", "resnet50_fpn", {"frozen_bn_eps": 0.0}),
    "retinanet_resnet50_fpn_v2": ("retinanet_resnet50_fpn_v2_coco-5905b1c5.pth", "resnet50_fpn_v2", {}),
}

#: torchvision ImageNet classification weights usable as backbones.
TORCHVISION_BACKBONE_WEIGHTS: dict[str, str] = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",
    "resnet101": "resnet101-63fe2227.pth",
}


def save_checkpoint(path: str | os.PathLike, model: RetinaNet, *, half_weights: bool = False, **extra: Any) -> None:
    """Write ``model`` (config, class names, weights) plus ``extra`` entries atomically.

    ``half_weights`` stores conv/linear weights as float16 (half the file; loading upcasts them),
    for shipped models: the stored values then *are* the model, so evaluate it as loaded.
    """
    state = model.state_dict()
    if half_weights:
        state = {k: v.half() if v.is_floating_point() and v.ndim > 1 else v for k, v in state.items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "config": model.config.to_dict(),
        "model": state,
        **extra,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a ``.pth``/``.pt`` file safely; errors name the file and say what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)  # torch's run 7 lines
        raise WeightsError(f"cannot read weights file {path}: not a PyTorch checkpoint ({first.strip()[:160]})") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path} holds a {type(data).__name__}, not a state dict or checkpoint")
    return data


def load_model(
    spec: str, *, arch: str | None = None, num_classes: int | None = None, **overrides: Any
) -> RetinaNet:
    """Build and load a model from a weight spec (see the module docstring); returns it in eval mode.

    ``overrides`` are torchvision-style config keywords (``min_size``, ``score_thresh``, ...)
    applied on top of what the weights imply.
    """
    if spec.startswith("torchvision:"):
        return _load_torchvision(spec.split(":", 1)[1], overrides)
    if spec.startswith("preset:"):
        from retina_edge.presets import preset_checkpoint_path

        spec = str(preset_checkpoint_path(spec.split(":", 1)[1]))
    data = read_checkpoint(spec)
    if data.get("format") == CHECKPOINT_FORMAT:
        config = ModelConfig.from_dict(data["config"], source=spec)
        _check_named_arch(config, arch=arch, num_classes=num_classes, source=spec)
        if overrides:
            config = apply_overrides(config, **overrides)
        return _build_and_load(config, data["model"], source=spec)
    state_dict = _unwrap_state_dict(data)
    inferred_arch, inferred_classes = infer_arch(state_dict)
    arch = arch or inferred_arch
    num_classes = num_classes or inferred_classes
    defaults: dict[str, Any] = dict(get_arch(arch).bare_defaults)
    defaults.update(infer_widths(state_dict))
    if num_classes == len(COCO_91_CLASSES):
        defaults["class_names"] = COCO_91_CLASSES
    logger.warning("%s is a bare state dict: its classes' names, anchors and input size are not in it, so "
                   "torchvision's defaults are assumed; a retina-edge checkpoint carries them", spec)
    config = model_config(arch, num_classes=num_classes, **{**defaults, **overrides})
    return _build_and_load(config, state_dict, source=spec)


def _check_named_arch(config: ModelConfig, *, arch: str | None, num_classes: int | None, source: str) -> None:
    """A checkpoint names its own architecture and classes: a different ``arch``/``num_classes``
    is a mistake to point out, not a wish to ignore."""
    if arch is not None and arch != config.arch:
        raise WeightsError(f"arch {arch} contradicts {source}, which is a {config.arch} checkpoint; drop arch "
                           "(it is only for bare state dicts)", option="arch")
    if num_classes is not None and num_classes != config.num_classes:
        raise WeightsError(f"num_classes {num_classes} contradicts {source}, which has {config.num_classes} classes; "
                           "drop num_classes (it is only for bare state dicts)", option="num_classes")


def _load_torchvision(name: str, overrides: dict[str, Any]) -> RetinaNet:
    if name not in TORCHVISION_DETECTION_WEIGHTS:
        raise WeightsError(
            f"unknown torchvision weights {name!r}; choose one of: {', '.join(TORCHVISION_DETECTION_WEIGHTS)}"
        )
    filename, arch, defaults = TORCHVISION_DETECTION_WEIGHTS[name]
    state_dict = download_torchvision_file(filename)
    config = model_config(arch, num_classes=91, class_names=COCO_91_CLASSES, **{**defaults, **overrides})
    return _build_and_load(config, state_dict, source=f"torchvision:{name}")


def download_torchvision_file(filename: str) -> dict[str, Tensor]:
    """State dict of a torchvision weight file from the torch.hub cache, downloading it if online."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        return _unwrap_state_dict(read_checkpoint(cached))
    url = _DOWNLOAD_ROOT + filename
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", weights_only=True, check_hash=True)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; hash mismatch is RuntimeError
        raise WeightsError(
            f"could not download {url} ({error}). Offline? Copy that file to {cached} "
            f"(or set TORCH_HOME) and run again."
        ) from None


def _unwrap_state_dict(data: dict[str, Any]) -> dict[str, Tensor]:
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(data.get(key), dict):
            return data[key]
    if not any(isinstance(v, Tensor) for v in data.values()):
        raise WeightsError("the file holds no tensors: not a model state dict")
    return data


def infer_arch(state_dict: dict[str, Tensor]) -> tuple[str, int]:
    """(arch, num_classes) of a torchvision-layout RetinaNet state dict, read from its keys and shapes."""
    blocks3 = {k.split(".")[3] for k in state_dict if k.startswith("backbone.body.layer3.")}
    bottleneck = any(k.startswith("backbone.body.layer1.0.conv3.") for k in state_dict)
    depth = {2: 18, 6: 50 if bottleneck else 34, 23: 101}.get(len(blocks3))
    cls_key = "head.classification_head.cls_logits.weight"
    if depth is None or cls_key not in state_dict:
        raise WeightsError(
            "cannot recognise this state dict as a torchvision-layout RetinaNet "
            "(expected backbone.body.*, backbone.fpn.* and head.* keys); give its arch and num_classes",
            option=("arch", "num_classes"),
        )
    reg_out = state_dict["head.regression_head.bbox_reg.weight"].shape[0]
    num_classes = state_dict[cls_key].shape[0] // (reg_out // 4)
    group_norm = "head.classification_head.conv.0.1.weight" in state_dict
    return f"resnet{depth}_fpn{'_v2' if group_norm else ''}", num_classes


def infer_widths(state_dict: dict[str, Tensor]) -> dict[str, int]:
    """Stem width, FPN channels and head depth of a torchvision-layout state dict, from its shapes
    (a model trained narrower than torchvision's, like the shipped preset, loads as it is)."""
    head = {k.split(".")[3] for k in state_dict if k.startswith("head.classification_head.conv.")}
    widths = {"head_convs": len(head)} if head else {}
    if "backbone.body.conv1.weight" in state_dict:
        widths["backbone_width"] = int(state_dict["backbone.body.conv1.weight"].shape[0])
    for key in ("backbone.fpn.layer_blocks.0.0.weight", "backbone.fpn.layer_blocks.0.weight"):
        if key in state_dict:
            widths["fpn_channels"] = int(state_dict[key].shape[0])
    return widths


def _build_and_load(config: ModelConfig, state_dict: dict[str, Tensor], *, source: str) -> RetinaNet:
    if config.widths:  # a pruned model: its record is checked before it shapes the model
        check_widths(config, state_dict, source=source)
    model = RetinaNet(config)
    load_state_dict_checked(model, state_dict, source=source)
    return model.eval()


def load_state_dict_checked(module: torch.nn.Module, state_dict: dict[str, Tensor], *, source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that lists what does not fit, briefly."""
    try:
        module.load_state_dict(dict(state_dict), strict=True)
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        summary = "; ".join(lines[1:4]) if len(lines) > 1 else lines[0]
        if len(summary) > 600:
            summary = summary[:600] + " ..."
        name = getattr(getattr(module, "config", None), "arch", type(module).__name__)
        raise WeightsError(f"weights from {source} do not fit {name}: {summary}") from None


def load_backbone_weights(model: RetinaNet, spec: str) -> None:
    """Load ImageNet ResNet weights (``torchvision:resnet50`` or a path) into ``model.backbone.body``."""
    if spec.startswith("torchvision:"):
        name = spec.split(":", 1)[1]
        if name not in TORCHVISION_BACKBONE_WEIGHTS:
            raise WeightsError(f"unknown backbone weights {name!r}; choose one of: {', '.join(TORCHVISION_BACKBONE_WEIGHTS)}")
        state_dict = download_torchvision_file(TORCHVISION_BACKBONE_WEIGHTS[name])
    else:
        state_dict = _unwrap_state_dict(read_checkpoint(spec))
    body_state = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
    load_state_dict_checked(model.backbone.body, body_state, source=spec)
