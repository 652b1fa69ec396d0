"""Per-layer widths of a structurally pruned model: building it, recording them, what it costs.

A pruned RetinaNet is its architecture with some layers narrowed (fewer channels). Its config
carries the record (:class:`~retina_edge.config.LayerWidths`: module path -> channels), so
``RetinaNet(config)`` builds the narrowed model and a checkpoint loads like any other; no pruning
library is needed to load, export or run it. Layers are narrowed by keeping the first channels of
their initial weights (a loaded checkpoint then overwrites them), so an unloaded model keeps the
architecture's initialisation (the classifier's prior bias included).

Costs: MACs are the multiply-accumulates of the convolutions (what :class:`FlopCounterMode`
counts, halved), for one image at the model's input size; parameters are the model's parameters.
Both are computed on the ``meta`` device: no memory, no arithmetic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from retina_edge.config import LayerWidths, ModelConfig
from retina_edge.errors import ConfigError, WeightsError
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


def architecture(config: ModelConfig) -> nn.Module:
    """The unpruned architecture of ``config`` on the meta device (shapes only, no memory)."""
    from retina_edge.model.retinanet import RetinaNet

    with torch.device("meta"):
        return RetinaNet(dataclasses.replace(config, widths=LayerWidths()))


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


def record_widths(model: nn.Module) -> LayerWidths:
    """The widths record of ``model`` (``model.config`` names its architecture): every layer whose
    channels differ from the architecture's, in module order. A layer of a kind the record cannot
    hold (its parameters changed shape) is refused."""
    reference = dict(architecture(model.config).named_modules())
    layers = []
    for name, module in model.named_modules():
        channels, original = layer_channels(module), layer_channels(reference[name])
        if channels is None:
            shapes = {key: tuple(t.shape) for key, t in _own_tensors(module).items()}
            if shapes != {key: tuple(t.shape) for key, t in _own_tensors(reference[name]).items()}:
                raise ConfigError(f"{name} ({type(module).__name__}) changed shape, and the widths record "
                                  "holds only convolutions, BatchNorm and GroupNorm")
        elif channels != original:
            layers.append((name, channels))
    return LayerWidths(tuple(layers))


def _own_tensors(module: nn.Module) -> dict[str, Tensor]:
    return {**dict(module.named_parameters(recurse=False)), **dict(module.named_buffers(recurse=False))}


def check_widths(config: ModelConfig, state_dict: Mapping[str, Tensor], *, source: str) -> None:
    """``config``'s widths record must fit its architecture and agree with the weights: a record
    edited or damaged apart from its weights is refused, on one line, before any model is built."""
    narrow(architecture(config), config.widths, source=source)
    for name, channels in config.widths.layers:
        weight = state_dict.get(f"{name}.weight")
        if weight is None:
            weight = state_dict.get(f"{name}.running_mean")
        if weight is None:
            continue  # strict loading names the missing key
        stored = tuple(weight.shape[:2]) if weight.ndim == 4 else tuple(weight.shape[:1])
        if stored != channels[:len(stored)]:
            raise WeightsError(f"{source} has a damaged widths record: {name} has channels {list(channels)} "
                               f"in the record but {list(stored)} in the weights")


@dataclass(frozen=True)
class ModelCost:
    """What one forward pass of a model costs: ``macs`` (convolutions' multiply-accumulates for one
    image of ``input_size``), ``params`` (parameters)."""

    macs: int
    params: int
    input_size: tuple[int, int]

    def ratio_to(self, other: ModelCost) -> tuple[float, float]:
        """(MACs, parameters) as fractions of ``other``'s."""
        return self.macs / other.macs, self.params / other.params


def model_cost(config: ModelConfig, input_size: tuple[int, int] | None = None) -> ModelCost:
    """MACs and parameters of the model ``config`` describes (widths included), at ``input_size``
    (H, W; default: the config's ``max_size`` square, the padded input of the deployment graph)."""
    from torch.utils.flop_counter import FlopCounterMode

    from retina_edge.model.retinanet import RetinaNet

    size = input_size or (config.transform.max_size, config.transform.max_size)
    with torch.device("meta"):
        model = RetinaNet(config).eval()
        batch = torch.zeros(1, 3, *size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.head_outputs(batch)
    return ModelCost(macs=counter.get_total_flops() // 2, params=sum(p.numel() for p in model.parameters()),
                     input_size=tuple(size))


def width_rows(config: ModelConfig) -> list[tuple[str, str, str]]:
    """(layer, architecture's channels, this model's) of every narrowed conv, for ``inspect``."""
    reference = dict(architecture(config).named_modules())
    rows = []
    for name, channels in config.widths.layers:
        if isinstance(reference.get(name), nn.Conv2d):
            original = layer_channels(reference[name])
            rows.append((name, f"{original[1]} -> {original[0]}", f"{channels[1]} -> {channels[0]}"))
    return rows
