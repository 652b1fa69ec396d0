"""A model config measured against its unpruned architecture (no weights, the ``meta`` device):
the widths record of a pruned model, its check against a checkpoint's weights, and what a forward
pass costs.

Costs: MACs are the multiply-accumulates of the convolutions (what :class:`FlopCounterMode`
counts, halved), for one image at the model's input size; parameters are the model's parameters.
Both are computed on the ``meta`` device: no memory, no arithmetic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from retina_edge.config import LayerWidths, ModelConfig
from retina_edge.errors import ConfigError, WeightsError
from retina_edge.model.retinanet import RetinaNet
from retina_edge.model.widths import layer_channels, narrow


def architecture(config: ModelConfig) -> nn.Module:
    """The unpruned architecture of ``config`` on the meta device (shapes only, no memory)."""
    with torch.device("meta"):
        return RetinaNet(dataclasses.replace(config, widths=LayerWidths()))


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
