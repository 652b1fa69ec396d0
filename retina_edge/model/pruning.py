"""Structured channel pruning of a RetinaNet with Torch-Pruning's dependency graph (DepGraph).

Torch-Pruning traces the network once and groups every channel that must go together: a residual
stage's convs, norms and shortcut with the layers that read the stage (the next stage, the FPN's
lateral conv); the FPN's lateral convs (summed top-down); the FPN outputs P3..P7 with the extra
P6/P7 convs and the first conv of both head towers (one head serves every pyramid level); each
block's and tower's inner convs. A group loses the same channels everywhere, so the pruned network
is an ordinary, narrower network. The head's output convs (``cls_logits``, ``bbox_reg``) keep
their outputs (anchors x classes, anchors x 4): the deployment contract does not change.

Within each group the channels with the smallest weight magnitude go (Torch-Pruning's
``GroupMagnitudeImportance``: the L2 norm over all of the group's weights, each layer's share
normalised by its mean). Every group keeps ``1 - amount`` of its *original* channels, rounded to a
multiple of ``round_to``, so repeated steps reach the amount asked whatever the steps before did.
GroupNorm loses whole groups: the groups kept normalise exactly as before (Torch-Pruning's own
GroupNorm rule keeps the group count and thins every group, which changes every group's statistics
and, at torchvision's 32 groups, leaves few widths to choose from).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from retina_edge.errors import ConfigError
from retina_edge.model.backbone import FrozenBatchNorm2d
from retina_edge.model.widths import architecture, layer_channels, model_cost, record_widths
from retina_edge.optional import require

#: The head's output convs: their outputs are the contract's (anchors x classes, anchors x 4).
OUTPUT_LAYERS = ("head.classification_head.cls_logits", "head.regression_head.bbox_reg")
#: Side of the dummy input the dependency graph is traced with (shapes do not matter to it).
TRACE_SIDE = 64


@dataclass(frozen=True)
class PruneOptions:
    """``amount``: the fraction of each channel group's original channels to remove (0 <= amount < 1);
    ``round_to``: kept channels are a multiple of this (8: what FP16/INT8 kernels tile channels by;
    a group with at most this many channels is kept whole)."""

    amount: float
    round_to: int = 8

    def __post_init__(self) -> None:
        if not 0.0 <= self.amount < 1.0:
            raise ConfigError(f"the pruning amount must be in [0, 1), got {self.amount}", option="amount")
        if self.round_to < 1:
            raise ConfigError(f"round_to must be >= 1, got {self.round_to}", option="round_to")


@dataclass(frozen=True)
class PrunedGroup:
    """One channel group as pruned: its first conv (``root``), channels before and after."""

    root: str
    before: int
    after: int


def kept_channels(original: int, amount: float, step: int) -> int:
    """Channels a group of ``original`` channels keeps: ``1 - amount`` of them, to the nearest
    multiple of ``step``, at least ``step``; a group of at most ``step`` channels is kept whole."""
    if original <= step:
        return original
    return min(original, max(step, step * round(original * (1.0 - amount) / step)))


def prune_model(model: nn.Module, options: PruneOptions) -> list[PrunedGroup]:
    """Prune ``model`` (a :class:`~retina_edge.model.retinanet.RetinaNet`, pruned before or not) in
    place to ``options.amount`` of its architecture's channels, record its widths in
    ``model.config``; returns the groups it narrowed. Needs ``torch-pruning``."""
    tp = require("torch_pruning", "structured pruning")
    modules = dict(model.named_modules())
    missing = [name for name in OUTPUT_LAYERS if not isinstance(modules.get(name), nn.Conv2d)]
    if missing:
        raise ConfigError(f"pruning needs a RetinaNet head with output convs {', '.join(OUTPUT_LAYERS)}; "
                          f"{model.config.arch} lacks {', '.join(missing)}")
    graph = _dependency_graph(tp, model)
    originals = {name: channels[0] for name, module in architecture(model.config).named_modules()
                 if (channels := layer_channels(module)) is not None}
    names = {module: name for name, module in modules.items()}
    importance = tp.importance.GroupMagnitudeImportance(p=2)
    plans = []
    for group in graph.get_all_groups(ignored_layers=[modules[name] for name in OUTPUT_LAYERS],
                                      root_module_types=[nn.Conv2d]):
        root = group[0].dep.target.module
        per_group = _norm_group_size(group)
        before = root.out_channels
        after = kept_channels(originals[names[root]], options.amount, math.lcm(options.round_to, per_group))
        if after < before:
            scores = importance(group)
            plans.append((root, _least_important(scores, before - after, per_group), PrunedGroup(names[root], before, after)))
    for root, removed, _ in plans:
        graph.get_pruning_group(root, tp.prune_conv_out_channels, removed).prune()
    model.config = dataclasses.replace(model.config, widths=record_widths(model))
    return [pruned for _, _, pruned in plans]


class _Outputs(nn.Module):
    """The network as the dependency graph sees it: a normalised batch in, the head's tensors out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        outputs, _ = self.model.head_outputs(batch)
        return outputs["cls_logits"], outputs["bbox_regression"]


def _dependency_graph(tp, model: nn.Module):  # noqa: ANN001, ANN202 (torch_pruning's types)
    device = next(model.parameters()).device
    training = model.training
    # DepGraph traces through autograd: a frozen stage (no gradient) would be invisible to it, and kept whole.
    frozen = [parameter for parameter in model.parameters() if not parameter.requires_grad]
    for parameter in frozen:
        parameter.requires_grad_(True)
    try:
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(
                _Outputs(model), example_inputs=torch.zeros(1, 3, TRACE_SIDE, TRACE_SIDE, device=device),
                customized_pruners=_layer_pruners(tp), verbose=False)
    finally:
        for parameter in frozen:
            parameter.requires_grad_(False)
        model.train(training)


def _norm_group_size(group) -> int:  # noqa: ANN001
    """Channels per GroupNorm group in this channel group (1 without GroupNorm): the unit it loses."""
    sizes = [dep.target.module.num_channels // dep.target.module.num_groups for dep, _ in group
             if isinstance(dep.target.module, nn.GroupNorm)]
    return math.lcm(*sizes) if sizes else 1


def _least_important(scores: Tensor, count: int, per_group: int) -> list[int]:
    """The ``count`` channels to remove: the lowest scores, in whole GroupNorm groups of ``per_group``."""
    if per_group == 1:
        return sorted(torch.argsort(scores)[:count].tolist())
    groups = torch.argsort(scores.view(-1, per_group).mean(dim=1))[:count // per_group].tolist()
    return sorted(channel for g in groups for channel in range(g * per_group, (g + 1) * per_group))


def _layer_pruners(tp) -> dict[type, object]:  # noqa: ANN001
    """Torch-Pruning rules for our FrozenBatchNorm (buffers only) and for GroupNorm by whole groups."""

    class FrozenBatchNormPruner(tp.pruner.BasePruningFunc):
        TARGET_MODULES = FrozenBatchNorm2d

        def prune_out_channels(self, layer: FrozenBatchNorm2d, idxs: list[int]) -> nn.Module:
            keep = _kept(layer.weight.shape[0], idxs)
            for name in ("weight", "bias", "running_mean", "running_var"):
                setattr(layer, name, getattr(layer, name)[keep])
            return layer

        prune_in_channels = prune_out_channels  # one width in and out: Torch-Pruning's intra-layer link

        def get_out_channels(self, layer: FrozenBatchNorm2d) -> int:
            return int(layer.weight.shape[0])

        get_in_channels = get_out_channels

    class WholeGroupNormPruner(tp.pruner.BasePruningFunc):
        TARGET_MODULES = nn.GroupNorm

        def prune_out_channels(self, layer: nn.GroupNorm, idxs: list[int]) -> nn.Module:
            per_group = layer.num_channels // layer.num_groups
            if len(set(idxs)) != per_group * len({index // per_group for index in idxs}):
                raise ConfigError(f"GroupNorm loses whole groups of {per_group} channels; asked to remove {idxs}")
            keep = _kept(layer.num_channels, idxs)
            layer.num_groups -= len(idxs) // per_group
            layer.num_channels = len(keep)
            if layer.affine:
                layer.weight = self._prune_parameter_and_grad(layer.weight, keep, 0)
                layer.bias = self._prune_parameter_and_grad(layer.bias, keep, 0)
            return layer

        prune_in_channels = prune_out_channels

        def get_out_channels(self, layer: nn.GroupNorm) -> int:
            return layer.num_channels

        get_in_channels = get_out_channels

    return {FrozenBatchNorm2d: FrozenBatchNormPruner(), nn.GroupNorm: WholeGroupNormPruner()}


def _kept(count: int, removed: list[int]) -> list[int]:
    gone = set(removed)
    return [index for index in range(count) if index not in gone]


def amount_for_macs(model: nn.Module, fraction: float, options: PruneOptions, *,
                    input_size: tuple[int, int] | None = None) -> float:
    """The smallest pruning amount whose model costs at most ``fraction`` of the unpruned
    architecture's MACs (bisection over pruned copies; rounding makes the cost a staircase)."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"the MACs target must be a fraction in (0, 1), got {fraction}", option="target_macs")
    unpruned = model_cost(dataclasses.replace(model.config, widths=type(model.config.widths)()), input_size).macs

    def macs_at(amount: float) -> float:
        trial = copy.deepcopy(model)
        prune_model(trial, dataclasses.replace(options, amount=amount))
        return model_cost(trial.config, input_size).macs / unpruned

    return _bisect(macs_at, fraction, low=0.0, high=0.95)


def _bisect(cost: Callable[[float], float], target: float, *, low: float, high: float, steps: int = 10) -> float:
    if cost(high) > target:
        raise ConfigError(f"even pruning 95% of the channels leaves more than {target:.0%} of the MACs "
                          "(the output convs and rounding keep a floor)", option="target_macs")
    for _ in range(steps):
        middle = (low + high) / 2
        if cost(middle) <= target:
            high = middle
        else:
            low = middle
    return round(high, 4)
