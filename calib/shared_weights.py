"""One copy per weight in the precision graphs.

The head's convolutions are shared by the five pyramid levels. The FP32 export stores each weight
once, but Q/DQ insertion (ModelOpt) writes a quantized weight, scale and zero point per consumer,
and its FP16 islands a cast copy: byte-identical initializers under new names. For ResNet-50 at
512x512 they made the TensorRT-placement INT8 graph 261 MB against the FP32 graph's 154 MB, and an
engine builder would carry them too. Identical initializers are merged here, keeping the first name.
"""

from __future__ import annotations

import hashlib


def share_identical_initializers(model) -> int:  # noqa: ANN001 (onnx.ModelProto)
    """Merge byte-identical initializers of ``model`` in place (inputs of subgraphs included);
    returns how many were removed. Initializers a graph input overrides are left alone."""
    import onnx

    graph = model.graph
    overridable = {value.name for value in graph.input}
    kept: dict[tuple, onnx.TensorProto] = {}
    renamed: dict[str, str] = {}
    for init in graph.initializer:
        if init.name in overridable:
            continue
        data = init.raw_data or onnx.numpy_helper.to_array(init).tobytes()
        key = (init.data_type, tuple(init.dims), hashlib.sha256(data).digest())
        first = kept.setdefault(key, init)
        if first is not init:
            renamed[init.name] = first.name
    if not renamed:
        return 0
    for node in _all_nodes(graph):
        for index, name in enumerate(node.input):
            if name in renamed:
                node.input[index] = renamed[name]
    remaining = [init for init in graph.initializer if init.name not in renamed]
    del graph.initializer[:]
    graph.initializer.extend(remaining)
    return len(renamed)


def _all_nodes(graph):  # noqa: ANN001, ANN202
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            for subgraph in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                yield from _all_nodes(subgraph)
