"""Graph work with the weights on disk: rewrites of an ONNX graph without its weights in memory.

Loading a graph, rewriting it and saving it again holds the weights several times over (the
loaded graph, a simplifier's copies, each serialization), so peak memory grows with the number of
copies rather than with the model (figures for ResNet-50: bench/RESULTS.md). Here the conv
and matmul weights (the bulk) move once into a file beside the graph (ONNX external data), the
rewrites see a graph of a few MB that references them, and they come back only to be written
into the final file. Biases, scales and shape constants stay inline, where rewrites read them.
"""

from __future__ import annotations

import os
from pathlib import Path

from retina_edge.errors import RetinaEdgeError
from retina_edge.optional import require
from retina_edge.resources import release_freed_memory

#: The input (by node type) that holds a layer's weight: the bulk of the bytes, and of the graph
#: rewrites mostly need only its shape (see ``export.onnx_export.simplify`` for when not).
WEIGHT_INPUTS = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}


def move_weights_out(source: str | os.PathLike, graph_path: Path):  # noqa: ANN201 (onnx.ModelProto)
    """Write ``source`` to ``graph_path`` with its weights in ``<graph_path>.weights`` (same folder);
    returns that graph loaded without them. Other graphs saved in the folder may reference them."""
    onnx = require("onnx", "ONNX export")
    from onnx.external_data_helper import set_external_data

    model = onnx.load(str(source))
    weights = {node.input[WEIGHT_INPUTS[node.op_type]] for node in model.graph.node if node.op_type in WEIGHT_INPUTS}
    for init in model.graph.initializer:
        if init.name in weights and init.HasField("raw_data"):
            set_external_data(init, location=f"{graph_path.name}.weights")
    onnx.save(model, str(graph_path))  # writes the tensors marked external to that file
    del model
    release_freed_memory()
    return onnx.load(str(graph_path), load_external_data=False)


def save_with_weights(model, folder: Path, output: str | os.PathLike) -> None:  # noqa: ANN001
    """Write ``model`` (whose weights are in files of ``folder``) to ``output`` with its weights inside."""
    onnx = require("onnx", "ONNX export")
    onnx.load_external_data_for_model(model, str(folder))
    write_model(model, output)


def write_model(model, path: str | os.PathLike) -> None:  # noqa: ANN001 (onnx.ModelProto)
    """Write ``model`` as one ONNX file, serializing one initializer at a time.

    ``onnx.save`` serializes the whole model into one buffer first, and protobuf's encoder grows
    that buffer by doubling: writing ResNet-50's 154 MB graph peaked 500 MB above the loaded
    model. Here the model minus its initializers is serialized (a few MB), then each initializer
    is appended inside the graph field. Protobuf lets fields come in any order on the wire, so the
    file parses to the same model (``tests/test_graph_weights.py``); only the byte order differs.
    """
    onnx = require("onnx", "ONNX export")
    graph = model.graph
    rest = onnx.GraphProto()
    for field, value in graph.ListFields():
        if field.name != "initializer":
            _copy_field(rest, field, value)
    head = onnx.ModelProto()
    for field, value in model.ListFields():
        if field.name != "graph":
            _copy_field(head, field, value)
    rest_bytes, head_bytes = rest.SerializeToString(), head.SerializeToString()
    sizes = [init.ByteSize() for init in graph.initializer]
    graph_size = len(rest_bytes) + sum(len(_INITIALIZER_TAG) + len(_varint(size)) + size for size in sizes)
    total = len(head_bytes) + len(_GRAPH_TAG) + len(_varint(graph_size)) + graph_size
    if total >= PROTOBUF_LIMIT:
        raise RetinaEdgeError(f"{path}: the model is {total / 2**30:.1f} GiB, over protobuf's 2 GiB limit for one file")
    with open(path, "wb") as file:
        file.write(head_bytes)
        file.write(_GRAPH_TAG + _varint(graph_size) + rest_bytes)
        for init, size in zip(graph.initializer, sizes):
            file.write(_INITIALIZER_TAG + _varint(size))
            file.write(init.SerializeToString())


#: Protobuf parsers (onnx, ONNX Runtime, TensorRT's) refuse messages of 2 GiB or more.
PROTOBUF_LIMIT = 2**31
#: Wire tags (field number << 3 | 2, length-delimited) of ModelProto.graph (7) and GraphProto.initializer (5).
_GRAPH_TAG, _INITIALIZER_TAG = bytes([7 << 3 | 2]), bytes([5 << 3 | 2])


def _copy_field(target, field, value) -> None:  # noqa: ANN001
    """Set ``field`` of protobuf message ``target`` to ``value`` (a scalar, a message or a repeated field)."""
    if hasattr(value, "extend"):  # a repeated field (FieldDescriptor.label is deprecated in protobuf 6)
        getattr(target, field.name).extend(value)
    elif field.message_type is not None:
        getattr(target, field.name).CopyFrom(value)
    else:
        setattr(target, field.name, value)


def _varint(number: int) -> bytes:
    """Protobuf's base-128 varint encoding of a non-negative ``number``."""
    out = bytearray()
    while number > 0x7F:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def weights_to_inputs(model) -> list:  # noqa: ANN001
    """Turn ``model``'s external initializers into graph inputs of their type and shape, in place,
    so a simplifier cannot fold or read them; returns them for :func:`inputs_to_weights`."""
    import onnx
    from onnx import helper

    graph = model.graph
    external = []
    for init in graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            external.append(onnx.TensorProto())
            external[-1].CopyFrom(init)  # a reference only (no data): a detached copy is cheap
    names = {init.name for init in external}
    kept = [init for init in graph.initializer if init.name not in names]
    graph.input.extend(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)) for init in external)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return external


def inputs_to_weights(model, weights: list) -> None:  # noqa: ANN001
    """Undo :func:`weights_to_inputs` on ``model`` (the simplified graph): the inputs become the
    initializers again (those a rewrite dropped as unused stay dropped)."""
    graph = model.graph
    names = {init.name for init in weights}
    present = {value.name for value in graph.input if value.name in names}
    inputs = [value for value in graph.input if value.name not in names]
    del graph.input[:]
    graph.input.extend(inputs)
    graph.initializer.extend(init for init in weights if init.name in present)
