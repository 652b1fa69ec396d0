"""Where a precision recipe's INT8 graph quantizes, read back from the graph itself (no torch).

Quantization-aware training must put its fake quantization exactly where the deployed graph
puts Q/DQ, with the same arithmetic. Rather than re-deriving each placement's rules (ModelOpt's for
TensorRT in :mod:`retina_edge.calib.tensorrt_qdq`, ONNX Runtime's quantizer for CPUs), QAT reads
them from the graph the recipe wrote (``build --int8``'s output, the PTQ graph):

- each activation tensor read through a QuantizeLinear -> DequantizeLinear pair: its scale, zero
  point and integer range (int8 for TensorRT, uint8 with a zero point for CPUs), and the node that
  produces it (named after the PyTorch module call by the exporter);
- each convolution whose weight is read through a DequantizeLinear per output channel (axis 0),
  symmetric: its scale is ``max |W[c]| / 127``, recomputed from the weights by both placements.

Int32 bias pairs (ONNX Runtime's) are not sites: their scale is the input's times the weight's,
and their rounding error is about 1e-9 of the bias.

Every consumer of a quantized tensor must read it through its pair (true of both placements:
TensorRT's fused residual inputs are tensors nobody quantizes), so quantizing the tensor where it
is produced is the same as quantizing it where it is read.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from retina_edge.contract import INPUT_NAME
from retina_edge.errors import RetinaEdgeError
from retina_edge.optional import require

#: Integer range of a quantized tensor by the ONNX type of its zero point.
INTEGER_RANGES = {2: (0, 255), 3: (-128, 127)}  # TensorProto.UINT8, INT8
#: Per-channel symmetric weights: codes within +-127 (scale = max |W[c]| / 127).
WEIGHT_RANGE = (-127, 127)
_CALL_SUFFIX = re.compile(r"^(?P<name>.+?)_(?P<index>\d+)$")


@dataclass(frozen=True)
class ActivationQuant:
    """One activation's Q/DQ pair: ``q = clamp(round(x / scale) + zero_point, qmin, qmax)``;
    ``producer``: the node writing the tensor ('' for the graph input)."""

    scale: float
    zero_point: int
    qmin: int
    qmax: int
    producer: str


@dataclass(frozen=True)
class QuantSites:
    """``activations``: tensor name -> its pair; ``weights``: names of the convolution nodes whose
    weights are quantized per output channel (symmetric, :data:`WEIGHT_RANGE`)."""

    activations: dict[str, ActivationQuant]
    weights: frozenset[str]

    def to_dict(self) -> dict:
        return {"activations": {name: [a.scale, a.zero_point, a.qmin, a.qmax, a.producer]
                                for name, a in self.activations.items()},
                "weights": sorted(self.weights)}

    @classmethod
    def from_dict(cls, data: dict) -> QuantSites:
        activations = {name: ActivationQuant(float(v[0]), int(v[1]), int(v[2]), int(v[3]), str(v[4]))
                       for name, v in data["activations"].items()}
        return cls(activations, frozenset(data["weights"]))


def read_quant_sites(path: str | os.PathLike) -> QuantSites:
    """The quantization sites of the Q/DQ graph at ``path`` (see the module docstring)."""
    onnx = require("onnx", "quantization-aware training")
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    zero_types = {init.name: init.data_type for init in graph.initializer}
    producer = {output: node for node in graph.node for output in node.output}
    activations, weights, quantized = {}, set(), {}
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in constants:
            source, scale, zero = node.input[0], constants[node.input[1]], constants[node.input[2]]
            if scale.size != 1:
                raise RetinaEdgeError(f"{path}: activation {source} is quantized per channel; QAT mirrors per-tensor "
                                      "activation scales only")
            qmin, qmax = INTEGER_RANGES[zero_types[node.input[2]]]
            origin = producer.get(source)
            activations[source] = ActivationQuant(float(scale.reshape(-1)[0]), int(zero.reshape(-1)[0]), qmin, qmax,
                                                  origin.name if origin is not None else "")
            quantized[source] = node.output[0]
        elif node.op_type == "Conv" and _dequantized_weight(node.input[1], producer, constants):
            weights.add(node.name)
    _check_read_quantized(graph, quantized, path)
    return QuantSites(activations, frozenset(weights))


def _dequantized_weight(name: str, producer: dict, constants: dict) -> bool:
    """Whether a conv's weight input ``name`` is a per-channel DequantizeLinear of a constant (its
    codes stored, ONNX Runtime's form, or quantized in the graph, TensorRT's)."""
    dequantize = producer.get(name)
    if dequantize is None or dequantize.op_type != "DequantizeLinear":
        return False
    source = dequantize.input[0]
    quantize = producer.get(source)
    stored = source in constants or (quantize is not None and quantize.op_type == "QuantizeLinear"
                                     and quantize.input[0] in constants)
    axis = next((attribute.i for attribute in dequantize.attribute if attribute.name == "axis"), 1)
    return stored and constants[dequantize.input[1]].size > 1 and axis == 0


def _check_read_quantized(graph, quantized: dict[str, str], path) -> None:  # noqa: ANN001
    """Refuse a graph where some node reads a quantized tensor in float: quantizing where the
    tensor is produced would then change what that node reads."""
    for node in graph.node:
        if node.op_type == "QuantizeLinear":
            continue
        float_reads = [name for name in node.input if name in quantized]
        if float_reads:
            raise RetinaEdgeError(f"{path}: node {node.name} reads {float_reads[0]} in float although it is quantized "
                                  "for other nodes; QAT cannot mirror such a placement")
    outputs = [value.name for value in graph.output if value.name in quantized]
    if outputs:
        raise RetinaEdgeError(f"{path}: graph output {outputs[0]} is quantized; QAT cannot mirror it")


@dataclass(frozen=True)
class NodeScope:
    """An exported node's name taken apart: the exporter writes ``/<scope>/.../<Op>[_j]``, one scope
    component per module call (``layer1.0``, ``conv.0.0_2`` for a module's third call), the op type
    and ``j``, its count among the ops of that type in the same call."""

    components: tuple[str, ...]
    op: str
    op_index: int

    @classmethod
    def parse(cls, name: str) -> NodeScope:
        parts = name.strip("/").split("/")
        if name == INPUT_NAME or len(parts) < 2:
            raise RetinaEdgeError(f"node {name!r} is not named after a module call (/scope/Op)")
        op, index = split_call_suffix(parts[-1])
        return cls(tuple(parts[:-1]), op, index)


def split_call_suffix(component: str) -> tuple[str, int]:
    """``conv.0.0_2`` -> (``conv.0.0``, 2); ``layer1.0`` -> (``layer1.0``, 0)."""
    match = _CALL_SUFFIX.match(component)
    return (match["name"], int(match["index"])) if match else (component, 0)
