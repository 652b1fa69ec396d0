"""PyTorch -> ONNX: one I/O contract, metadata inside, simplified and checked, written atomically.

Uses PyTorch's TorchScript-based exporter (``dynamo=False``): it needs no onnxscript, maps our NMS
op to a standard ``NonMaxSuppression`` node, and handles the dynamic batch axis of this fixed-size
CNN; the graph is then simplified (onnxsim, else onnxslim) and validated with ``onnx.checker``.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import io
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from retina_edge.atomic import atomic_path
from retina_edge.config import ModelConfig
from retina_edge.contract import (INPUT_NAME, TAILS, DeploymentMetadata, GraphTail, check_batch_range, check_frame_tail,
                                  nvinfer_preprocess)
from retina_edge.errors import RetinaEdgeError
from retina_edge.export.graph_weights import inputs_to_weights, move_weights_out, save_with_weights, weights_to_inputs
from retina_edge.model.retinanet import RetinaNet
from retina_edge.optional import require
from retina_edge.preprocess import FrameInput, PreprocessConfig
from retina_edge.resources import release_freed_memory
from retina_edge.runtime.core.model_file import embed_deployment

MIN_OPSET = 17
#: Newest opset the exporter of the pinned torch writes.
MAX_OPSET = 20


@dataclass(frozen=True)
class ExportOptions:
    """``batch`` is (min, opt, max): the ONNX batch axis is dynamic unless min == max; the triple is
    kept in the metadata for engine profiles. ``tail``: a registered graph tail (``none``, ``decode``,
    ``nms``, ``deepstream``, or a plugin's; :data:`~retina_edge.contract.TAILS`), baking in the
    model's post-processing settings (:meth:`GraphTail.bake`). For a tail that normalises its input
    (``deepstream``) the preprocessing becomes nvinfer's (:func:`~retina_edge.contract.nvinfer_preprocess`:
    the graph takes RGB in [0, 1]), so calibration feeds what DeepStream will. ``frame``: make a
    frame graph (:mod:`~retina_edge.export.frame_graph`), which takes these camera frames and does
    ``preprocess`` inside; its tail must give final detections (``nms``, ``deepstream``)."""

    preprocess: PreprocessConfig
    tail: str = "decode"
    batch: tuple[int, int, int] = (1, 1, 8)
    opset: int = 17
    simplify: bool = True
    frame: FrameInput | None = None

    def __post_init__(self) -> None:
        check_batch_range(self.batch)
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise RetinaEdgeError(f"opset {self.opset} is not supported: use {MIN_OPSET} to {MAX_OPSET}")
        if TAILS.get(self.tail).normalises_input:
            object.__setattr__(self, "preprocess", nvinfer_preprocess(self.preprocess))
        if self.frame is not None:
            check_frame_tail(self.tail)

    @property
    def dynamic_batch(self) -> bool:
        return self.batch[0] != self.batch[2]

    def metadata_for(self, model_config: ModelConfig) -> DeploymentMetadata:
        """The contract of the FP32 graph these options export from a model of ``model_config``."""
        return DeploymentMetadata(model=model_config, preprocess=self.preprocess,
                                  tail=GraphTail.bake(self.tail, model_config.postprocess), batch=self.batch,
                                  frame=self.frame)


def graph_module(model: RetinaNet, metadata: DeploymentMetadata) -> torch.nn.Module:
    """The module whose forward becomes the graph described by ``metadata`` (its tail and input
    size): the tail's registered module (``TailSpec.module``, ``"package.module:Class"``), and for
    a frame graph its box steps around it (:class:`~retina_edge.export.frame_graph.FrameTail`)."""
    path, _, name = metadata.tail.spec.module.partition(":")
    try:
        module_class = getattr(importlib.import_module(path), name)
    except (ImportError, AttributeError) as error:
        raise RetinaEdgeError(f"the {metadata.tail.mode} tail's module {metadata.tail.spec.module} cannot be "
                              f"loaded: {error}") from None
    module = module_class(model, metadata.input_size, metadata.tail)
    if metadata.frame is None:
        return module
    from retina_edge.export.frame_graph import FrameTail

    return FrameTail(module, metadata)


def export_onnx(model: RetinaNet, path: str | os.PathLike, options: ExportOptions) -> Path:
    """Export ``model`` to ``path``; the file appears only once it is complete and valid. A frame
    graph is the plain graph traced, then wrapped in its frame steps."""
    onnx = require("onnx", "ONNX export")
    metadata = options.metadata_for(model.config)
    module = graph_module(model.eval().cpu(), metadata.without_frame()).eval()
    output_names = list(metadata.output_names)
    example = torch.zeros((options.batch[1], 3, options.preprocess.height, options.preprocess.width))
    dynamic_axes = {name: {0: "batch"} for name in [INPUT_NAME, *output_names]} if options.dynamic_batch else None
    path = Path(path)
    with atomic_path(path) as tmp, tempfile.TemporaryDirectory(prefix="retina-edge-export-") as scratch:
        traced = Path(scratch) / "traced.onnx"
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(
                module, (example,), str(traced), dynamo=False, input_names=[INPUT_NAME], output_names=output_names,
                dynamic_axes=dynamic_axes, opset_version=options.opset, do_constant_folding=True,
            )
        release_freed_memory()  # the trace's transients
        # The rewrites below see the graph without its conv weights (graph_weights): R50 v2 at
        # 512x512 went from 1.8 to 1.4 GB peak, the final write of the weights now the largest step.
        graph = move_weights_out(traced, Path(scratch) / "graph.onnx")
        traced.unlink()
        if options.simplify:
            graph = simplify(graph, Path(scratch))
        _fix_output_shapes(graph, module, example)
        if metadata.frame is not None:
            from retina_edge.export.frame_graph import wrap_frame

            wrap_frame(graph, metadata)
        embed_deployment(graph, metadata)
        save_with_weights(graph, Path(scratch), tmp)
        del graph
        release_freed_memory()
        onnx.checker.check_model(str(tmp))  # from the file: no second copy of the weights here
    return path


def _fix_output_shapes(graph, module: torch.nn.Module, example: torch.Tensor) -> None:  # noqa: ANN001
    """Write the static sizes of every non-batch output axis (the tracer leaves them symbolic)."""
    with torch.no_grad():
        outputs = module(example)
    for output, value in zip(graph.graph.output, outputs):
        dims = output.type.tensor_type.shape.dim
        for axis, size in enumerate(value.shape):
            if axis > 0:
                dims[axis].ClearField("dim_param")
                dims[axis].dim_value = int(size)


def simplify(graph, weights_folder: Path):  # noqa: ANN001, ANN201 (onnx.ModelProto)
    """``graph`` (its conv weights in files of ``weights_folder``) simplified by onnxsim or onnxslim.

    The simplifiers first see those weights as graph inputs of their shape: they fold shape
    computations without them, and copy every weight they are given. A graph where a simplifier
    needs a weight's values (folding FrozenBatchNorm's scale into its conv, in the v1 layouts)
    fails there and is simplified again with the weights loaded. Unsimplified if both fail."""
    weights = weights_to_inputs(graph)
    simplified = _simplify(graph)
    inputs_to_weights(simplified or graph, weights)
    if simplified is None:
        onnx = require("onnx", "ONNX export")
        onnx.load_external_data_for_model(graph, str(weights_folder))
        simplified = _simplify(graph)
    gc.collect()  # the simplifiers' graph objects are cycles that hold copies of the graph
    if simplified is None:
        warnings.warn("neither onnxsim nor onnxslim could simplify the graph; exported it unsimplified", stacklevel=2)
        return graph
    return simplified


def _simplify(graph):  # noqa: ANN001, ANN202
    """onnxsim, falling back to onnxslim; None if neither can handle ``graph``."""
    try:
        import onnxsim

        with contextlib.redirect_stdout(io.StringIO()):
            simplified, ok = onnxsim.simplify(graph)
        if ok:
            return simplified
    except Exception:  # noqa: BLE001 - a simplifier failure must never fail the export
        pass
    try:
        import onnxslim

        return onnxslim.slim(graph)
    except Exception:  # noqa: BLE001
        return None
