"""Per-layer widths of a structurally pruned model: narrowing its layers as it is built.

A pruned RetinaNet is its architecture with some layers narrowed (fewer channels). Its config
carries the record (:class:`~retina_edge.config.LayerWidths`: module path -> channels), so
``RetinaNet(config)`` builds the narrowed model (:func:`narrow`) and a checkpoint loads like any
other; no pruning library is needed to load, export or run it. Layers are narrowed by keeping the
first channels of their initial weights (a loaded checkpoint then overwrites them), so an unloaded
model keeps the architecture's initialisation (the classifier's prior bias included). Recording,
checking and costing a record against the unpruned architecture is :mod:`.measure`'s.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from retina_edge.config import LayerWidths
from retina_edge.errors import ConfigError
from retina_edge.model.backbone import FrozenBatchNorm2d

#: Names of the channel counts each layer kind records (the order of its widths entry).
CHANNEL_NAMES: dict[type, tuple[str, ...]] = {
    nn.Conv2d: ("out", "in"), nn.BatchNorm2d: ("channels",), FrozenBatchNorm2d: ("channels",),
    nn.GroupNorm: ("channels", "groups"),
}


def layer_channels(module: nn.Module) -> tuple[int, ...] | None:
    """The channels of a layer of a kind the widths record knows, in its order; None for others."""
    if isinstance(module, nn.Conv2d):
        return (module.out_channels, module.in_channels)
    if isinstance(module, (nn.BatchNorm2d, FrozenBatchNorm2d)):
        return (int(module.running_mean.shape[0]),)
    if isinstance(module, nn.GroupNorm):
        return (module.num_channels, module.num_groups)
    return None


def narrow(model: nn.Module, widths: LayerWidths, *, source: str = "the model config") -> None:
    """Narrow ``model``'s layers (an unpruned build of its architecture) to ``widths``, in place."""
    modules = dict(model.named_modules())
    for name, channels in widths.layers:
        module = modules.get(name)
        kind = next((k for k in CHANNEL_NAMES if isinstance(module, k)), None)
        if kind is None:
            what = "no layer" if module is None else f"a {type(module).__name__}, which has no recorded widths"
            raise ConfigError(f"{source} has a damaged widths record: {name} is {what} of {_arch_name(model)}")
        original = layer_channels(module)
        problem = _channels_problem(channels, original, CHANNEL_NAMES[kind])
        if problem:
            raise ConfigError(f"{source} has a damaged widths record: {name} {problem}")
        _NARROWERS[kind](module, channels)


def _channels_problem(channels: tuple[int, ...], original: tuple[int, ...], names: tuple[str, ...]) -> str | None:
    if len(channels) != len(names):
        return f"has {len(channels)} numbers; its kind records {len(names)} ({', '.join(names)})"
    wider = [f"{n} {c} > {o}" for n, c, o in zip(names, channels, original) if c > o]
    if wider:
        return f"is wider than the architecture ({', '.join(wider)})"
    if names[-1] == "groups" and channels[0] % channels[1]:
        return f"has {channels[0]} channels in {channels[1]} groups, which do not divide them"
    return None


def _arch_name(model: nn.Module) -> str:
    return getattr(getattr(model, "config", None), "arch", type(model).__name__)


def _sliced(tensor: Tensor, *sizes: int) -> Tensor:
    return tensor[tuple(slice(0, size) for size in sizes)].clone()


def _narrow_conv(conv: nn.Conv2d, channels: tuple[int, ...]) -> None:
    out_channels, in_channels = channels
    if conv.groups != 1 and (out_channels, in_channels) != (conv.out_channels, conv.in_channels):
        raise ConfigError(f"a grouped convolution ({conv}) cannot be narrowed")
    conv.weight = nn.Parameter(_sliced(conv.weight.data, out_channels, in_channels), conv.weight.requires_grad)
    if conv.bias is not None:
        conv.bias = nn.Parameter(_sliced(conv.bias.data, out_channels), conv.bias.requires_grad)
    conv.out_channels, conv.in_channels = out_channels, in_channels


def _narrow_norm(norm: nn.Module, channels: tuple[int, ...]) -> None:
    """BatchNorm, FrozenBatchNorm, GroupNorm: every per-channel parameter and buffer keeps its first channels."""
    count = channels[0]
    for name, parameter in list(norm.named_parameters(recurse=False)):
        setattr(norm, name, nn.Parameter(_sliced(parameter.data, count), parameter.requires_grad))
    for name, buffer in list(norm.named_buffers(recurse=False)):
        if buffer.ndim == 1:
            setattr(norm, name, _sliced(buffer, count))
    if isinstance(norm, nn.BatchNorm2d):
        norm.num_features = count
    if isinstance(norm, nn.GroupNorm):
        norm.num_channels, norm.num_groups = channels


_NARROWERS: dict[type, Callable[[nn.Module, tuple[int, ...]], None]] = {
    nn.Conv2d: _narrow_conv, nn.BatchNorm2d: _narrow_norm, FrozenBatchNorm2d: _narrow_norm, nn.GroupNorm: _narrow_norm,
}


