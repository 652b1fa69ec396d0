"""The TensorRT Q/DQ placement against ModelOpt's ONNX PTQ output, pair by pair and scale by scale.

ModelOpt (``modelopt.onnx.quantization.quantize``, int8, the same statistics handed over as a
TensorRT calibration cache) is the reference: for each layout (ResNet-18 basic blocks, ResNet-50
bottlenecks with frozen BN, v2's GroupNorm heads), with and without the predictors kept in float,
every node of the two graphs must read the same inputs through the same Q/DQ pairs (same source,
scales and zero points to the bit, same axis), and ONNX Runtime must give the same outputs.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from retina_edge.model.retinanet import build_model
from retina_edge.calib.precision import excluded_nodes, write_trt_calibration_cache
from retina_edge.calib.statistics import compute_stats
from retina_edge.calib.tensorrt_qdq import plan_tensorrt_qdq, quantize_for_tensorrt
from retina_edge.errors import RetinaEdgeError
from retina_edge.export.onnx_export import ExportOptions, export_onnx
from retina_edge.preprocess import PreprocessConfig

LAYOUTS = {
    "r18-bn": ("resnet18_fpn", {"backbone_width": 16, "fpn_channels": 32, "head_convs": 1, "norm": "bn"}),
    "r50-frozen-bn": ("resnet50_fpn", {"backbone_width": 16, "fpn_channels": 32, "head_convs": 2}),
    "r18-v2-gn": ("resnet18_fpn_v2", {"backbone_width": 16, "fpn_channels": 64, "head_convs": 2}),
}


@pytest.fixture(scope="module", params=list(LAYOUTS))
def exported(request, tmp_path_factory):
    """(FP32 graph, statistics, calibration batch) for one layout."""
    arch, options = LAYOUTS[request.param]
    torch.manual_seed(0)
    model = build_model(arch, num_classes=3, **options).eval()
    folder = tmp_path_factory.mktemp(request.param)
    graph = export_onnx(model, folder / "fp32.onnx", ExportOptions(preprocess=PreprocessConfig(96, 128)))
    batches = [np.random.default_rng(seed).random((1, 3, 96, 128), np.float32) for seed in range(3)]
    return graph, compute_stats(graph, iter(batches), method="max"), batches[0]


def modelopt_reference(graph, stats, output, *, exclude, batch):  # noqa: ANN001, ANN201
    """ModelOpt's own INT8 placement of ``graph``, with ``stats`` as its calibration cache."""
    quantize = pytest.importorskip("modelopt.onnx.quantization").quantize
    cache = write_trt_calibration_cache(stats, output.with_suffix(".cache"))
    quantize(str(graph), quantize_mode="int8", calibration_data=batch, calibration_method="max",
             calibration_cache_path=str(cache), calibration_eps=["cpu"],
             nodes_to_exclude=[re.escape(name) for name in exclude] or None, high_precision_dtype="fp32",
             output_path=str(output), log_level="ERROR")
    return output


def inputs_through_qdq(path) -> dict[str, tuple]:  # noqa: ANN001
    """Each non-Q/DQ node's inputs, a quantized one as (source, scale bytes, zero-point bytes, axis)
    and an initializer by the hash of its values (ModelOpt renames the copies it makes)."""
    graph = onnx.load(str(path)).graph
    initializers = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    producer = {output: node for node in graph.node for output in node.output}

    def plain(name: str):  # noqa: ANN202
        if name in initializers:
            return "init", hashlib.sha256(initializers[name].tobytes()).hexdigest()
        return "tensor", name

    def described(name: str):  # noqa: ANN202
        dequantize = producer.get(name)
        if dequantize is None or dequantize.op_type != "DequantizeLinear":
            return plain(name)
        source = producer[dequantize.input[0]].input[0]
        scale, zero = (initializers[dequantize.input[i]] for i in (1, 2))
        axis = next((a.i for a in dequantize.attribute if a.name == "axis"), None)
        return "qdq", plain(source), scale.tobytes(), zero.tobytes(), str(zero.dtype), axis if scale.ndim else None

    return {node.name: (node.op_type, tuple(described(name) for name in node.input))
            for node in graph.node if node.op_type not in ("QuantizeLinear", "DequantizeLinear", "Constant")}


@pytest.mark.parametrize("keep_predictors", [False, True])
def test_placement_and_scales_match_modelopt(exported, tmp_path, keep_predictors):
    graph, stats, batch = exported
    exclude = excluded_nodes(graph, keep_predictors=keep_predictors)
    ours = quantize_for_tensorrt(graph, stats, tmp_path / "ours.onnx", exclude=exclude)
    theirs = modelopt_reference(graph, stats, tmp_path / "modelopt.onnx", exclude=exclude, batch=batch)
    ours_inputs, their_inputs = inputs_through_qdq(ours), inputs_through_qdq(theirs)
    assert set(ours_inputs) == set(their_inputs)
    differing = [name for name in ours_inputs if ours_inputs[name] != their_inputs[name]]
    assert not differing, differing[:5]
    quantized = sum(d[0] == "qdq" for _op, inputs in ours_inputs.values() for d in inputs)
    assert quantized > 20
    outputs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"images": batch})
               for p in (ours, theirs)]
    for mine, reference in zip(*outputs):
        np.testing.assert_array_equal(mine, reference)


def test_residual_adds_quantize_the_shortcut_only(exported):
    """Every residual add reads one input in float (the one TensorRT fuses into a conv)."""
    graph, _stats, _batch = exported
    model = onnx.load(str(graph), load_external_data=False)
    plan = plan_tensorrt_qdq(model.graph, exclude=[])
    adds = [n.name for n in model.graph.node if n.op_type == "Add" and n.name.startswith("/backbone/")
            and "layer" in n.name and not set(n.input) & {i.name for i in model.graph.initializer}]
    fused = {name for name, _index in plan.float_inputs}
    assert adds and set(adds) <= fused


def test_statistics_of_another_graph_are_refused(exported, tmp_path):
    graph, stats, _batch = exported
    partial = type(stats)(method=stats.method, ranges={k: v for k, v in stats.ranges.items() if k != "images"},
                          num_images=stats.num_images)
    with pytest.raises(RetinaEdgeError, match="no range for 1 tensors"):
        quantize_for_tensorrt(graph, partial, tmp_path / "q.onnx", exclude=[])
    assert not (tmp_path / "q.onnx").exists()
