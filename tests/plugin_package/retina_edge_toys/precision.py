"""Precision ``fp16w``: every float weight of the FP32 graph stored as FP16 and cast back to FP32 where
it is read (half the file; the same arithmetic up to the weights' rounding)."""

import numpy as np
import onnx
from onnx import helper, numpy_helper


def fp16_weights(inputs) -> None:  # noqa: ANN001 - retina_edge.calib.recipes.ConvertInputs
    model = onnx.load(str(inputs.fp32))
    graph = model.graph
    casts, seen = [], set()
    for index, init in enumerate(list(graph.initializer)):
        if init.data_type != onnx.TensorProto.FLOAT or np.prod(init.dims) < 16 or init.name in seen:
            continue
        name = init.name
        seen.add(name)
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), f"{name}_fp16")
        graph.initializer[index].CopyFrom(half)
        casts.append(helper.make_node("Cast", [half.name], [name], to=onnx.TensorProto.FLOAT, name=f"fp16w_cast_{index}"))
    for cast in reversed(casts):
        graph.node.insert(0, cast)
    onnx.save(model, str(inputs.output))
