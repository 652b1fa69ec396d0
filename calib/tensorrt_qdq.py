"""INT8 Q/DQ for TensorRT: ModelOpt's placement for ResNet-FPN RetinaNets, inserted in one pass.

TensorRT builds an explicitly quantized engine from where the graph's QuantizeLinear /
DequantizeLinear pairs sit, so where they go decides which layers run in INT8 and which fusions
stay possible. The placement here is the one ModelOpt's ONNX PTQ (``quantize_mode="int8"``) gives
these networks, and ``tests/test_tensorrt_qdq.py`` checks it against ModelOpt's own output, pair
by pair and scale by scale:

- every convolution of the network: its input per tensor, its weight per output channel (axis 0);
- ``MaxPool`` and ``Resize`` (the stem and the FPN's upsampling): their input;
- a residual ``Add``: only the shortcut. The input that comes from a convolution (through a
  bias/scale/ReLU chain at most) is left in float, since TensorRT fuses the add into that
  convolution's epilogue; when both come from convolutions, the one farther from where the two
  branches split is fused (ModelOpt's rule), e.g. ``conv3`` rather than the ``downsample`` conv;
- one pair per quantized tensor, read by all its consumers except a fused ``Add`` input.

Scales are symmetric INT8 (zero point 0): activations ``amax / 127`` from the calibration
statistics, weights ``max |W[c]| / 127`` per output channel. Weights stay float initializers read
through their Q/DQ pair, one pair per convolution, so a weight shared by the head's pyramid
levels is still stored once.

Why not ModelOpt itself: it holds many copies of the graph at once (reloads, shape inference by
serialization, a duplicated copy of every shared weight, its own calibration run), so its peak
memory is a multiple of the graph's size (bench/RESULTS.md). This holds one copy and the scales.
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass
from pathlib import Path

from retina_edge.atomic import atomic_path
from retina_edge.calib.statistics import ActivationStats, int8_scale
from retina_edge.contract import NETWORK_SCOPES
from retina_edge.errors import RetinaEdgeError
from retina_edge.export.graph_weights import write_model

#: Ops whose first input is quantized besides convolutions (TensorRT runs them in INT8): the ones these
#: networks have, where ModelOpt's placement was checked (it also quantizes pooling ops they lack).
INPUT_QUANTIZED_OPS = ("MaxPool", "Resize")
#: Ops a convolution's output may pass through and still be fused with a following residual add.
_FUSIBLE_CHAIN = ("Relu", "Add", "Mul", "BatchNormalization")


@dataclass(frozen=True)
class QdqPlan:
    """Where the Q/DQ pairs go. ``activations``: tensors quantized per tensor, in their first consumer's order;
    ``weights``: (convolution name, weight initializer) pairs quantized per output channel;
    ``float_inputs``: (node name, input index) reading the float tensor although it is quantized."""

    activations: tuple[str, ...]
    weights: tuple[tuple[str, str], ...]
    float_inputs: frozenset[tuple[str, int]]


def plan_tensorrt_qdq(graph, *, exclude: list[str]) -> QdqPlan:  # noqa: ANN001 (onnx.GraphProto)
    """The Q/DQ placement for ``graph``'s network nodes not in ``exclude`` (no weights needed)."""
    initializers = {init.name for init in graph.initializer}
    constants = initializers | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    producer = {output: node for node in graph.node for output in node.output}
    excluded = set(exclude)
    quantized: dict[str, None] = {}  # insertion-ordered set
    weights, float_inputs = [], set()
    for node in graph.node:
        if not node.name.startswith(NETWORK_SCOPES) or node.name in excluded:
            continue
        if node.op_type == "Conv" and node.input[1] in initializers:
            quantized[node.input[0]] = None
            weights.append((node.name, node.input[1]))
        elif node.op_type in INPUT_QUANTIZED_OPS:
            quantized[node.input[0]] = None
        elif node.op_type == "Add" and not set(node.input) & constants and all(i in producer for i in node.input):
            fused = _fused_input(node, producer, constants)
            if fused is not None:
                shortcut = 1 - fused
                quantized[node.input[shortcut]] = None
                float_inputs.add((node.name, fused))
    return QdqPlan(tuple(quantized), tuple(weights), frozenset(float_inputs))


def _fused_input(add, producer: dict, constants: set[str]) -> int | None:  # noqa: ANN001
    """Index of the residual add's input TensorRT fuses into a convolution, None if it is no residual add."""
    first, second = (producer[name] for name in add.input)
    conv_first, conv_second = (_conv_behind(node, producer, constants) for node in (first, second))
    split, depth_first, depth_second = _split(first, second, producer)
    if conv_first is not None and conv_second is not None:
        if conv_first is conv_second:
            return None
        return 0 if depth_first > depth_second else 1
    conv = conv_first if conv_first is not None else conv_second
    if conv is None or conv.name == split:  # a conv whose output also bypasses the rest: not a residual
        return None
    return 0 if conv is conv_first else 1


def _conv_behind(node, producer: dict, constants: set[str]):  # noqa: ANN001, ANN202
    """The convolution ``node`` is (or ends a Relu / bias Add / scale Mul / BN chain of), else None."""
    for _ in range(4):
        if node.op_type == "Conv":
            return node
        if node.op_type not in _FUSIBLE_CHAIN:
            return None
        data = [name for name in node.input if name not in constants]
        if len(data) != 1:
            return None  # an Add or Mul of two branches, not a per-channel bias or scale
        node = producer.get(data[0])
        if node is None:
            return None
    return None


def _split(first, second, producer: dict) -> tuple[str | None, int, int]:  # noqa: ANN001
    """The nearest common ancestor of ``first`` and ``second`` (None if none) and each one's steps back to it."""
    def depths(start) -> dict[str, int]:  # noqa: ANN001
        found, frontier = {start.name: 0}, collections.deque([start])
        while frontier:
            node = frontier.popleft()
            for name in node.input:
                parent = producer.get(name)
                if parent is not None and parent.name not in found:
                    found[parent.name] = found[node.name] + 1
                    frontier.append(parent)
        return found

    from_first, from_second = depths(first), depths(second)
    common = set(from_first) & set(from_second)
    if not common:
        return None, len(from_first), len(from_second)
    split = min(common, key=lambda name: from_first[name] + from_second[name])
    return split, from_first[split], from_second[split]


def quantize_for_tensorrt(fp32_onnx: str | os.PathLike, stats: ActivationStats, output: str | os.PathLike, *,
                          exclude: list[str]) -> Path:
    """Write the TensorRT-placement Q/DQ graph of ``fp32_onnx`` with activation scales from ``stats``."""
    import onnx

    model = onnx.load(str(fp32_onnx))
    plan = plan_tensorrt_qdq(model.graph, exclude=exclude)
    missing = [name for name in plan.activations if name not in stats.ranges]
    if missing:
        raise RetinaEdgeError(f"the calibration statistics have no range for {len(missing)} tensors to quantize "
                              f"(first: {missing[0]}); they were computed for another graph")
    insert_qdq(model.graph, plan, {name: int8_scale(stats.amax(name)) for name in plan.activations})
    with atomic_path(output) as tmp:
        write_model(model, tmp)
    return Path(output)


def insert_qdq(graph, plan: QdqPlan, scales: dict[str, float]) -> None:  # noqa: ANN001 (onnx.GraphProto)
    """Insert ``plan``'s Q/DQ pairs into ``graph`` in place, nodes kept in topological order; ``scales``:
    each activation's per-tensor scale (weights' per-channel scales are computed from their values)."""
    import numpy as np
    from onnx import helper, numpy_helper

    weight_values = {init.name: init for init in graph.initializer}
    weights_of = collections.defaultdict(list)
    for conv, weight in plan.weights:
        weights_of[conv].append(weight)
    dequantized = {name: f"{name}_DequantizeLinear_Output" for name in plan.activations}
    new_initializers, nodes = [], []

    def pair(source: str, stem: str, scale, axis: int | None) -> str:  # noqa: ANN001
        scale = np.asarray(scale, np.float32)
        new_initializers.extend([numpy_helper.from_array(scale, f"{stem}_scale"),
                                 numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{stem}_zero_point")])
        extra = {} if axis is None else {"axis": axis}
        nodes.append(helper.make_node("QuantizeLinear", [source, f"{stem}_scale", f"{stem}_zero_point"],
                                      [f"{stem}_QuantizeLinear_Output"], name=f"{stem}_QuantizeLinear", **extra))
        nodes.append(helper.make_node("DequantizeLinear", [f"{stem}_QuantizeLinear_Output", f"{stem}_scale",
                                                           f"{stem}_zero_point"],
                                      [f"{stem}_DequantizeLinear_Output"], name=f"{stem}_DequantizeLinear", **extra))
        return f"{stem}_DequantizeLinear_Output"

    def activation_pairs(names) -> None:  # noqa: ANN001
        for name in names:
            if name in dequantized:
                pair(name, name, scales[name], None)

    activation_pairs(value.name for value in graph.input)
    for node in graph.node:
        for weight in weights_of.get(node.name, ()):
            values = numpy_helper.to_array(weight_values[weight])
            per_channel = np.abs(values.reshape(values.shape[0], -1)).max(axis=1)
            node.input[1] = pair(weight, f"{node.name}/{weight}", int8_scale(per_channel), 0)
        for index, name in enumerate(node.input):
            if name in dequantized and (node.name, index) not in plan.float_inputs:
                node.input[index] = dequantized[name]
        nodes.append(_copied(node))
        activation_pairs(node.output)
    graph.initializer.extend(new_initializers)
    del graph.node[:]
    graph.node.extend(nodes)


def _copied(node):  # noqa: ANN001, ANN202
    """A detached copy of ``node`` (the graph's own are released when its node list is rebuilt)."""
    from onnx import NodeProto

    copy = NodeProto()
    copy.CopyFrom(node)
    return copy
