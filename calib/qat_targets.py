"""Which INT8 recipes quantization-aware training can mirror, and with which fake quantization.

QAT fake-quantizes the PyTorch model as the recipe's graph quantizes, so it needs a fake-quant
backend (:data:`retina_edge.calib.qat.FAKE_QUANT_BACKENDS`) that computes what that graph's
placement computes, chosen by the graph target the recipe records. Torch-free: ``qat --target``'s
choices are read from here when the parser is built.
"""

from __future__ import annotations

from retina_edge.calib.recipes import get_recipe, recipes
from retina_edge.errors import RetinaEdgeError

#: The backend QAT uses for each INT8 recipe's graph target (bench/RESULTS.md, issue 39, says why):
#: ModelOpt's symmetric quantizer is TensorRT's placement; ONNX Runtime's uint8 activations with zero
#: points need PyTorch's own.
BACKEND_FOR_TARGET = {"tensorrt": "modelopt", "cpu": "torch"}


def qat_targets() -> tuple[str, ...]:
    """The targets of the INT8 recipes QAT can mirror (their graph target has a fake-quant backend), in table order."""
    return tuple(r.target for r in recipes() if r.precision == "int8" and r.graph_target in BACKEND_FOR_TARGET)


def qat_backend(target: str) -> str:
    """The fake-quant backend for the INT8 recipe of ``target``; a recipe QAT cannot mirror is refused in one line."""
    recipe = get_recipe("int8", target)
    if recipe.graph_target not in BACKEND_FOR_TARGET:
        raise RetinaEdgeError(f"quantization-aware training has no fake quantization for the int8 recipe for {target} "
                              f"(its graphs are placed for {recipe.graph_target}); it mirrors the int8 recipes for "
                              f"{', '.join(qat_targets())}", option="target")
    return BACKEND_FOR_TARGET[recipe.graph_target]
