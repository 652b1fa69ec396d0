"""Precision recipes: one table, keyed by (precision, target), of how each deployable graph is made.

A :class:`Recipe` says how the FP32 export becomes the graph (``convert``), whether that needs
calibration statistics and with which method by default, what the deployment contract records as
the graph's target, which precision the accuracy search keeps sensitive layers in, what ``verify``
tolerates, and whether the demo builds it. ``build`` (:func:`retina_edge.calib.build.build_precision_graph`),
the ``build`` command's ``--target`` choices, ``verify``'s thresholds and the demo read this
table; a new precision or placement is one :func:`register_recipe` call:

    register_recipe(Recipe(precision="fp16", target="ort", convert=my_fp16, graph_target="any",
                           verify=FP16_VERIFY, description="FP16 by onnxconverter-common"))

The table is a :class:`retina_edge.registry.Registry` keyed by (precision, target): a package
installed next to retina-edge adds a recipe from its ``retina_edge.plugins`` entry point, and the new
precision is then a ``--precision`` choice of ``build``, a graph the contract records, a row of
``verify``, and an nvinfer ``network-mode`` for DeepStream (``nvinfer_mode``): nothing else lists precisions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from retina_edge.contract import check_name
from retina_edge.errors import RetinaEdgeError
from retina_edge.registry import Registry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConvertInputs:
    """What a recipe's ``convert`` gets. ``fp32``: the exported FP32 graph; ``output``: where to
    write the converted graph (in the build's scratch folder); ``stats``: calibration statistics (recipes with
    ``calibrated``), else None; ``exclude``: names of the nodes to keep in FP32 (the post-network
    tail, and the predictors when asked)."""

    fp32: Path
    output: Path
    stats: object | None
    exclude: tuple[str, ...]


#: ``convert(inputs)`` writes ``inputs.output``; returns a legacy calibration cache it staged beside
#: it, or None (build puts the cache in place beside the model, both or neither).
Convert = Callable[[ConvertInputs], "Path | None"]

FP32_VERIFY = MappingProxyType({"max_delta_ap": 0.05, "min_ap_vs_reference": 0.98, "max_mean_score_error": 1e-4,
                                "max_score_error": 1e-3, "exact_tensor_tol": 1e-4})
FP16_VERIFY = MappingProxyType({"max_delta_ap": 0.3, "min_ap_vs_reference": 0.9, "max_mean_score_error": 2e-3})
INT8_VERIFY = MappingProxyType({"max_delta_ap": 1.0, "min_ap_vs_reference": 0.75, "max_mean_score_error": 0.02})


@dataclass(frozen=True)
class Recipe:
    """How to make a ``precision`` graph placed for ``target`` (see the module docstring).

    ``graph_target``: what the contract records (``any``: runs the same everywhere). ``calibrated``:
    ``convert`` needs calibration statistics (from ``calibration_method`` unless the caller picks
    one). ``search_high``: the precision the accuracy search keeps sensitive layers in (None: the
    search does not apply). ``verify``: :class:`~retina_edge.quality.verify.VerifyThresholds`
    fields. ``in_demo``: the demo builds and verifies it."""

    precision: str
    target: str
    convert: Convert
    graph_target: str = "any"
    calibrated: bool = False
    #: max, not entropy: entropy clipped and lost about 1.6 AP points on the preset (calib/statistics.py).
    calibration_method: str = "max"
    search_high: str | None = None
    verify: Mapping[str, float] = field(default_factory=lambda: INT8_VERIFY)
    in_demo: bool = False
    description: str = ""
    nvinfer_mode: int | None = 0

    def __post_init__(self) -> None:
        for what, value in (("precision", self.precision), ("target", self.target), ("graph target", self.graph_target)):
            check_name(value, f"a recipe's {what}")

    @property
    def key(self) -> tuple[str, str]:
        return self.precision, self.target

    @property
    def tag(self) -> str:
        """Short file-name tag: ``fp16``, ``int8-cpu`` (the demo names its graphs ``synth-<tag>.onnx``)."""
        return self.precision + (f"-{self.graph_target}" if self.graph_target != "any" else "")


#: (precision, target) -> :class:`Recipe`.
RECIPES: Registry[Recipe] = Registry("recipe")


def register_recipe(recipe: Recipe, *, replace: bool = False) -> Recipe:
    """Add ``recipe`` to the table; a second one for the same (precision, target) needs ``replace``."""
    return RECIPES.register(recipe.key, recipe, replace=replace)


def unregister_recipe(precision: str, target: str) -> None:
    RECIPES.unregister((precision, target))


def recipes() -> tuple[Recipe, ...]:
    return RECIPES.values()


def build_targets() -> tuple[str, ...]:
    """Every target some recipe builds for, in table order."""
    return tuple(dict.fromkeys(recipe.target for recipe in recipes()))


def precisions() -> tuple[str, ...]:
    """Every precision some recipe makes, in table order."""
    return tuple(dict.fromkeys(recipe.precision for recipe in recipes()))


def get_recipe(precision: str, target: str) -> Recipe:
    if (precision, target) not in RECIPES:
        known = ", ".join(f"{p} for {t}" for p, t in RECIPES.names())
        raise RetinaEdgeError(f"no recipe builds {precision} for {target}; the recipes are: {known}",
                              option=("precision", "target"))
    return RECIPES.get((precision, target))


def recipe_for_graph(precision: str, graph_target: str = "any") -> Recipe:
    """The recipe that made a graph the contract records as ``precision`` for ``graph_target``."""
    for recipe in recipes():
        if recipe.precision == precision and graph_target in (recipe.graph_target, "any"):
            return recipe
    raise RetinaEdgeError(f"no recipe makes {precision} graphs for {graph_target} (is the package that adds "
                          f"the {precision} recipe installed?)")


def _copy(inputs: ConvertInputs) -> None:
    import shutil

    shutil.copyfile(inputs.fp32, inputs.output)


def _fp16(inputs: ConvertInputs) -> None:
    from retina_edge.calib.precision import convert_fp16

    logger.info("converting to FP16 (ModelOpt AutoCast; inputs, outputs and the decode tail stay FP32)")
    convert_fp16(inputs.fp32, inputs.output)


def _int8_tensorrt(inputs: ConvertInputs) -> Path:
    from retina_edge.calib.precision import write_trt_calibration_cache
    from retina_edge.calib.tensorrt_qdq import quantize_for_tensorrt

    logger.info("inserting Q/DQ nodes for TensorRT (ModelOpt's placement, per-channel weights)")
    quantize_for_tensorrt(inputs.fp32, inputs.stats, inputs.output, exclude=list(inputs.exclude))
    return write_trt_calibration_cache(inputs.stats, inputs.output.with_name("calib.cache"))


def _int8_cpu(inputs: ConvertInputs) -> None:
    from retina_edge.calib.precision import quantize_for_cpu

    logger.info("inserting QDQ nodes for CPUs (ONNX Runtime: U8 activations, S8 per-channel weights)")
    quantize_for_cpu(inputs.fp32, inputs.stats, inputs.output, exclude=list(inputs.exclude))


for _target in ("tensorrt", "cpu"):
    register_recipe(Recipe("fp32", _target, _copy, verify=FP32_VERIFY, in_demo=_target == "cpu",
                           description="the exported graph as it is"))
    register_recipe(Recipe("fp16", _target, _fp16, verify=FP16_VERIFY, in_demo=_target == "cpu", nvinfer_mode=2,
                           description="ModelOpt AutoCast; inputs, outputs and the tail stay FP32"))
register_recipe(Recipe("int8", "cpu", _int8_cpu, graph_target="cpu", calibrated=True, search_high="fp32", in_demo=True,
                       nvinfer_mode=None, description="ONNX Runtime QDQ placement: U8 activations, S8 per-channel weights"))
register_recipe(Recipe("int8", "tensorrt", _int8_tensorrt, graph_target="tensorrt", calibrated=True, search_high="fp16",
                       in_demo=True, nvinfer_mode=1, description="ModelOpt's Q/DQ placement, per-channel weights, plus a legacy "
                                                 "calibration cache for TensorRT <= 10 / DeepStream"))
