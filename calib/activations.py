"""Activation ranges in one pass, with the reductions inside the graph.

ONNX Runtime's own calibrators make every intermediate tensor a graph output: for ResNet-50 at
512x512 that is about 1 GB copied out per image, held until the call returns, then histogrammed in
NumPy over every value. Here the graph itself reduces what each tensor contributes:

- ``max``: ``ReduceMin``/``ReduceMax`` per tensor (two scalars), merged as ORT's MinMax calibrator
  does (min of minima, max of maxima): the same numbers, from a plain inference's memory.
- ``entropy``: a regular sample of each tensor (``Flatten`` + ``Slice`` with a stride, at most
  65,536 values per image, all values of smaller tensors), fed to ORT's own histogram collector and
  entropy search (same bins, same KL-divergence threshold): the same estimator on a sample of
  millions of values per tensor over a calibration set, instead of every value.

The tensors are the ones ORT's calibrators select: every float tensor a node reads or writes,
initializers excepted (so quantizers find the names they expect).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from retina_edge.contract import INPUT_NAME
from retina_edge.optional import require

MAX_SAMPLES = 65536  # values per image a tensor contributes to its histogram at most
ENTROPY_BINS = 128  # ORT's defaults for its entropy calibrator
FLOAT_TYPES = (1, 10)  # TensorProto.FLOAT, FLOAT16


def _without_weights(model):  # noqa: ANN001, ANN202
    """A copy of ``model`` for shape inference: large initializers become typed inputs (their
    shapes are all inference needs), small ones (shape constants) stay."""
    from onnx import helper

    graph = model.graph
    small = [init for init in graph.initializer if len(init.raw_data) <= 1024 and not init.data_location]
    kept = {init.name for init in small}
    large = [helper.make_tensor_value_info(init.name, init.data_type, list(init.dims))
             for init in graph.initializer if init.name not in kept]
    light = helper.make_graph(list(graph.node), graph.name, [*graph.input, *large], list(graph.output), small,
                              value_info=list(graph.value_info))
    return helper.make_model(light, opset_imports=list(model.opset_import), ir_version=model.ir_version)


def tensors_to_calibrate(model) -> dict[str, tuple[int, ...]]:  # noqa: ANN001 (onnx.ModelProto)
    """Float tensors read or written by a node, not initializers: name -> shape (-1 where unknown)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(_without_weights(model))
    infos = {v.name: v for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)}
    initializers = {init.name for init in model.graph.initializer}
    selected = {}
    for node in model.graph.node:
        for name in (*node.input, *node.output):
            info = infos.get(name)
            if name and name not in initializers and info is not None and info.type.tensor_type.elem_type in FLOAT_TYPES:
                dims = info.type.tensor_type.shape.dim
                selected[name] = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
    return selected


def sample_step(shape: tuple[int, ...]) -> int | None:
    """Stride of the regular sample of a tensor of ``shape`` (batch first): None keeps it whole;
    else odd and no divisor or multiple of the last axis, so the sample does not fall on the same
    columns of every row (a lattice through all channels and positions)."""
    if len(shape) < 2 or any(d <= 0 for d in shape[1:]):
        return None  # a scalar, or a size unknown before running: kept whole
    size = int(np.prod(shape[1:]))
    if size <= MAX_SAMPLES:
        return None
    step = -(-size // MAX_SAMPLES) | 1
    while shape[-1] % step == 0 or step % shape[-1] == 0:
        step += 2
    return step


def _reduction_nodes(name: str, shape: tuple[int, ...], index: int, method: str, graph) -> tuple[list, list[str]]:  # noqa: ANN001
    """(nodes, output names) that reduce tensor ``name`` for ``method`` (constants go to ``graph``)."""
    from onnx import TensorProto, helper

    if method == "max":
        names = [f"calib_min_{index}", f"calib_max_{index}"]
        return [helper.make_node("ReduceMin", [name], [names[0]], keepdims=0),
                helper.make_node("ReduceMax", [name], [names[1]], keepdims=0)], names
    step = sample_step(shape)
    if step is None:
        return [], [name]
    flat, sample = f"calib_flat_{index}", f"calib_sample_{index}"
    inputs = [flat]
    for key, value in {"starts": 0, "ends": np.iinfo(np.int64).max, "axes": 1, "steps": step}.items():
        graph.initializer.append(helper.make_tensor(f"calib_{key}_{index}", TensorProto.INT64, [1], [value]))
        inputs.append(f"calib_{key}_{index}")
    return [helper.make_node("Flatten", [name], [flat], axis=1), helper.make_node("Slice", inputs, [sample])], [sample]


def augment(model, tensors: dict[str, tuple[int, ...]], method: str):  # noqa: ANN001, ANN201
    """``model`` with, per tensor, the outputs ``method`` needs; returns (model, {tensor: output names})."""
    from onnx import helper

    graph = model.graph
    del graph.output[:]
    outputs: dict[str, list[str]] = {}
    added: dict[str, list] = {}
    for index, (name, shape) in enumerate(tensors.items()):
        added[name], outputs[name] = _reduction_nodes(name, shape, index, method, graph)
        graph.output.extend(helper.make_empty_tensor_value_info(n) for n in outputs[name])
    _follow_producers(graph, added)
    return model, outputs


def _follow_producers(graph, added: dict[str, list]) -> None:  # noqa: ANN001
    """Insert each tensor's ``added`` nodes right after the node that produces it (a graph input's
    first), so ONNX Runtime runs them while the tensor is fresh and frees it as in plain inference
    (appended at the end, every activation would stay alive until the last node)."""
    produced = {out for node in graph.node for out in node.output}
    after: dict[str, list] = {}  # node output (or "" for graph inputs) -> the nodes that follow it
    for name, nodes in added.items():
        after.setdefault(name if name in produced else "", []).extend(nodes)
    ordered = list(after.get("", []))
    for node in graph.node:
        ordered.append(node)
        for out in node.output:
            ordered.extend(after.get(out, []))
    del graph.node[:]
    graph.node.extend(ordered)


def _session(path: Path):  # noqa: ANN202
    """An ONNX Runtime CPU session of an augmented graph, for calibration's runs of one shape."""
    ort = require("onnxruntime", "INT8 calibration")
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = False  # the arena keeps its peak; calibration runs one shape
    # Fusions that would drop a calibrated tensor cannot happen (a reduction reads it), and
    # no NCHWc layout rewrite (it would put a reorder in front of every reduction).
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    # Added nodes run right after their tensor's producer (the default order measured 1.8 GB
    # peak for ResNet-50 at 512x512 against 1.1 GB, as tensors waited for late reductions).
    options.execution_order = ort.ExecutionOrder.PRIORITY_BASED
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def symmetric_histogram(values: np.ndarray, bins: int, limit) -> np.ndarray:  # noqa: ANN001
    """``np.histogram(values, bins, range=(-limit, limit))[0]`` in one bincount pass."""
    if limit <= 0:
        return np.bincount(np.full(np.count_nonzero(values == 0), bins // 2), minlength=bins).astype(np.int64)
    # The collector's limit always covers its values, so the copy that drops NaNs and values
    # outside (as np.histogram does) is made only when there are some: it was 3/4 of the time.
    if values.size and not (values.min() >= -limit and values.max() <= limit):
        values = values[(values >= -limit) & (values <= limit)]
    index = ((values + limit) * (bins / (2 * limit))).astype(np.intp)
    np.minimum(index, bins - 1, out=index)
    return np.bincount(index, minlength=bins).astype(np.int64)


class RangeCollector:
    """Merges each image's reductions into per-tensor ``(low, high)`` ranges, as ORT's calibrators."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.minmax: dict[str, tuple[float, float]] = {}
        self.histograms = None
        if method == "entropy":
            calibrate = require("onnxruntime.quantization.calibrate", "INT8 calibration")
            self.histograms = calibrate.HistogramCollector(method="entropy", symmetric=True, num_bins=ENTROPY_BINS,
                                                           num_quantized_bins=ENTROPY_BINS, percentile=99.999,
                                                           scenario="same")

    def add(self, values: dict[str, list[np.ndarray]]) -> None:
        """``values``: tensor name -> the outputs :func:`augment` made for it, of one run."""
        if self.histograms is not None:
            for name, (sample,) in values.items():
                self._add_values(name, sample.reshape(-1))
            return
        for name, (low, high) in values.items():
            old_low, old_high = self.minmax.get(name, (np.inf, -np.inf))
            self.minmax[name] = (min(old_low, float(low)), max(old_high, float(high)))

    def _add_values(self, name: str, data: np.ndarray) -> None:
        """ORT's ``HistogramCollector.collect_value`` + ``merge_histogram`` (what its entropy
        calibrator runs) for one tensor, with a bincount for ``np.histogram``: a histogram over
        (-threshold, threshold), widened by whole bins on both sides when a larger value arrives."""
        low, high = (np.nanmin(data), np.nanmax(data)) if data.size else (np.float32(0), np.float32(0))
        threshold = np.array(max(abs(low), abs(high)), dtype=data.dtype)
        known = self.histograms.histogram_dict.get(name)
        if known is None:
            edges = np.linspace(-threshold, threshold, ENTROPY_BINS + 1)
            self.histograms.histogram_dict[name] = (symmetric_histogram(data, ENTROPY_BINS, threshold), edges, low, high,
                                                    threshold)
            return
        old_hist, old_edges, old_low, old_high, old_threshold = known
        bins, edges, extra = len(old_hist), old_edges, 0
        if threshold > old_threshold:
            if old_threshold == 0:
                edges = np.linspace(-threshold, threshold, bins + 1)
            else:
                stride = 2 * old_threshold / bins
                extra = int((threshold - old_threshold) // stride + 1)
                bins, threshold = bins + 2 * extra, extra * stride + old_threshold
                edges = np.linspace(-threshold, threshold, bins + 1)
        else:
            threshold = old_threshold
        hist = symmetric_histogram(data, bins, threshold)
        hist[extra : bins - extra] += old_hist
        self.histograms.histogram_dict[name] = (hist, edges, min(old_low, low), max(old_high, high), threshold)

    def ranges(self) -> dict[str, tuple[float, float]]:
        if self.histograms is None:
            return dict(self.minmax)
        with contextlib.redirect_stdout(io.StringIO()):  # ORT prints per-tensor progress
            result = self.histograms.compute_collection_result()
        return {name: (float(np.asarray(v[0]).reshape(-1)[0]), float(np.asarray(v[1]).reshape(-1)[0]))
                for name, v in result.items()}


def measured_shapes(model, names: list[str], example: np.ndarray, scratch: Path) -> dict[str, tuple[int, ...]]:  # noqa: ANN001
    """Shapes of tensors ``names`` when ``model`` runs on ``example``, from one run that outputs only
    their ``Shape``s. For the tensors static shape inference cannot size (those after the
    Shape/Reshape chains of GroupNorm: most of the v2 head), so they are sampled like the rest
    instead of copied out whole (92M values per image for R50 v2 at 512x512, against 10M)."""
    import onnx
    from onnx import helper

    shapes = {name: [helper.make_node("Shape", [name], [f"calib_shape_{i}"])] for i, name in enumerate(names)}
    shape_graph = onnx.ModelProto()
    shape_graph.CopyFrom(model)  # the graph without its weights (they stay in their file): cheap to copy
    del shape_graph.graph.output[:]
    shape_graph.graph.output.extend(helper.make_empty_tensor_value_info(nodes[0].output[0]) for nodes in shapes.values())
    _follow_producers(shape_graph.graph, shapes)  # at the end, every activation stayed alive: 1.1 GB for R50 v2
    path = scratch / "shapes.onnx"
    onnx.save(shape_graph, str(path))
    session = _session(path)
    values = session.run([nodes[0].output[0] for nodes in shapes.values()], {INPUT_NAME: example})
    del session
    path.unlink()
    return {name: tuple(int(d) for d in shape) for name, shape in zip(names, values)}


class ActivationProbe:
    """An ONNX Runtime session of the augmented network: ``run(batch)`` -> what :class:`RangeCollector` adds.
    ``example``: a batch of the shape every run will have (sizes the tensors shape inference cannot).
    The graphs it derives are written beside ``network_path``, where its weights file may be."""

    def __init__(self, network_path: Path, method: str, example: np.ndarray) -> None:
        import onnx

        model = onnx.load(str(network_path), load_external_data=False)  # weights stay in their file beside it
        tensors = tensors_to_calibrate(model)
        unknown = [name for name, shape in tensors.items() if any(d <= 0 for d in shape)]
        if method == "entropy" and unknown:
            tensors.update(measured_shapes(model, unknown, example, network_path.parent))
        model, self.outputs = augment(model, tensors, method)
        augmented = network_path.with_name("augmented.onnx")
        onnx.save(model, str(augmented))
        del model
        self.session = _session(augmented)
        self.names = [name for names in self.outputs.values() for name in names]

    def run(self, batch: np.ndarray) -> dict[str, list[np.ndarray]]:
        values = dict(zip(self.names, self.session.run(self.names, {INPUT_NAME: batch})))
        return {tensor: [values[n] for n in names] for tensor, names in self.outputs.items()}
