"""One copy per weight in the precision graphs.

The head's convolutions are shared by the five pyramid levels. The FP32 export stores each weight
once, but precision conversion works per consumer: Q/DQ insertion writes a scale and zero point for
each convolution reading a weight (ModelOpt's, which we used before :mod:`retina_edge.calib.tensorrt_qdq`,
even a copy of the weight: 261 MB for ResNet-50's TensorRT-placement graph against the FP32 graph's
154 MB), and FP16 AutoCast a cast copy. An engine builder would carry those copies too, so
byte-identical initializers are merged here, keeping the first name.
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
    # Deleted in place: rebuilding the list would copy every kept initializer (154 MB for ResNet-50).
    for index in reversed(range(len(graph.initializer))):
        if graph.initializer[index].name in renamed:
            del graph.initializer[index]
    return len(renamed)


def _all_nodes(graph):  # noqa: ANN001, ANN202
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            for subgraph in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                yield from _all_nodes(subgraph)
