"""PyTorch -> ONNX: one I/O contract, metadata inside, simplified and checked, written atomically.

Uses PyTorch's TorchScript-based exporter (``dynamo=False``): it needs no onnxscript, maps our NMS
op to a standard ``NonMaxSuppression`` node, and handles the dynamic batch axis of this fixed-size
CNN; the graph is then simplified (onnxsim, else onnxslim) and validated with ``onnx.checker``.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from retina_edge.atomic import atomic_path
from retina_edge.contract import INPUT_NAME, KEY_BATCH, OUTPUTS, DeploymentMetadata, check_batch_range, format_batch
from retina_edge.errors import MissingDependencyError, RetinaEdgeError
from retina_edge.export.graph_heads import DecodedCandidates, NmsDetections, RawOutputs
from retina_edge.model import RetinaNet
from retina_edge.preprocess import PreprocessConfig

MIN_OPSET = 17


@dataclass(frozen=True)
class ExportOptions:
    """``batch`` is (min, opt, max): the ONNX batch axis is dynamic unless min == max; the triple is
    kept in the metadata for engine profiles. ``postprocess``: ``none``, ``decode`` or ``nms``."""

    preprocess: PreprocessConfig
    postprocess: str = "decode"
    batch: tuple[int, int, int] = (1, 1, 8)
    opset: int = 17
    simplify: bool = True

    def __post_init__(self) -> None:
        check_batch_range(self.batch)
        if self.opset < MIN_OPSET:
            raise RetinaEdgeError(f"opset {self.opset} is too old; use {MIN_OPSET} or newer")
        if self.postprocess not in OUTPUTS:
            raise RetinaEdgeError(f"unknown postprocess {self.postprocess!r}; expected one of {tuple(OUTPUTS)}")

    @property
    def dynamic_batch(self) -> bool:
        return self.batch[0] != self.batch[2]


def graph_module(model: RetinaNet, options: ExportOptions) -> torch.nn.Module:
    """The module whose forward becomes the graph, for ``options.postprocess``."""
    size = (options.preprocess.height, options.preprocess.width)
    if options.postprocess == "none":
        return RawOutputs(model)
    if options.postprocess == "decode":
        return DecodedCandidates(model, size)
    return NmsDetections(model, size)


def export_onnx(model: RetinaNet, path: str | os.PathLike, options: ExportOptions) -> Path:
    """Export ``model`` to ``path``; the file appears only once it is complete and valid."""
    onnx = _require("onnx", "ONNX export", "pip install 'retina-edge[onnx]'")
    module = graph_module(model.eval().cpu(), options).eval()
    output_names = list(OUTPUTS[options.postprocess])
    example = torch.zeros((options.batch[1], 3, options.preprocess.height, options.preprocess.width))
    dynamic_axes = {name: {0: "batch"} for name in [INPUT_NAME, *output_names]} if options.dynamic_batch else None
    path = Path(path)
    with atomic_path(path) as tmp:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(
                module, (example,), str(tmp), dynamo=False, input_names=[INPUT_NAME], output_names=output_names,
                dynamic_axes=dynamic_axes, opset_version=options.opset, do_constant_folding=True,
            )
        graph = onnx.load(str(tmp))
        if options.simplify:
            graph = simplify(graph)
        _fix_output_shapes(graph, module, example)
        metadata = DeploymentMetadata(model=model.config, preprocess=options.preprocess, postprocess=options.postprocess)
        props = {**metadata.to_props(), KEY_BATCH: format_batch(options.batch)}
        set_metadata(graph, props)
        onnx.checker.check_model(graph)
        onnx.save(graph, str(tmp))
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


def set_metadata(graph, props: dict[str, str]) -> None:  # noqa: ANN001 (onnx.ModelProto)
    """Replace ``metadata_props`` entries of ``graph`` with ``props``, keeping unrelated ones
    (but not the simplifier's bookkeeping)."""
    kept = [(p.key, p.value) for p in graph.metadata_props if p.key not in props and not p.key.startswith("onnxsim.")]
    del graph.metadata_props[:]
    for key, value in [*kept, *props.items()]:
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value


def simplify(graph):  # noqa: ANN001, ANN201 (onnx.ModelProto)
    """onnxsim, falling back to onnxslim; the unsimplified graph if neither can handle it."""
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
        warnings.warn("neither onnxsim nor onnxslim could simplify the graph; exported it unsimplified", stacklevel=2)
        return graph


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """``metadata_props`` of an ONNX file as a dict (no graph weights are kept in memory)."""
    onnx = _require("onnx", "reading ONNX metadata", "pip install onnx")
    graph = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in graph.metadata_props}


def _require(package: str, feature: str, install: str):  # noqa: ANN202
    try:
        return __import__(package)
    except ImportError:
        raise MissingDependencyError(package, feature, install) from None
