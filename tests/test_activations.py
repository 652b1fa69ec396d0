"""Calibration ranges computed in the graph (calib/activations.py) against ONNX Runtime's own
calibrators on the same graph and images: MinMax exactly, entropy to the bin when nothing is
sampled; the sample stride, the histogram kernel and the node order that keeps memory low."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import onnx
import pytest
import torch

from retina_edge.model.retinanet import build_model
from retina_edge.calib import activations
from retina_edge.calib.statistics import compute_stats, network_subgraph
from retina_edge.export.onnx_export import ExportOptions, export_onnx
from retina_edge.preprocess import PreprocessConfig


@pytest.fixture(scope="module")
def graph(tmp_path_factory):  # noqa: ANN001, ANN201
    torch.manual_seed(0)
    model = build_model("resnet18_fpn", num_classes=3, backbone_width=16, fpn_channels=32, head_convs=1).eval()
    folder = tmp_path_factory.mktemp("activations")
    return export_onnx(model, folder / "m.onnx", ExportOptions(preprocess=PreprocessConfig(96, 128), batch=(1, 1, 4)))


def images(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.normal(0, 1, (1, 3, 96, 128)).astype(np.float32) for _ in range(count)]


def ort_ranges(graph, tmp_path, method: str) -> dict:  # noqa: ANN001
    """What ORT's calibrator of ``method`` gives on the network part of ``graph``."""
    import onnxruntime.quantization.calibrate as calibrate

    network = tmp_path / "network.onnx"
    network_subgraph(graph, network)
    kind = calibrate.CalibrationMethod.MinMax if method == "max" else calibrate.CalibrationMethod.Entropy
    calibrator = calibrate.create_calibrator(str(network), [], str(tmp_path / "augmented.onnx"), calibrate_method=kind,
                                             extra_options={"symmetric": method == "entropy"})

    class Reader:
        def __init__(self, image: np.ndarray) -> None:
            self.items = iter([{"images": image}])

        def get_next(self):  # noqa: ANN202
            return next(self.items, None)

    with contextlib.redirect_stdout(io.StringIO()):
        for image in images(6):  # one call per image, as the calibration before this module ran it
            calibrator.collect_data(Reader(image))
        data = calibrator.compute_data()
    return {name: tuple(float(np.asarray(v).reshape(-1)[0]) for v in value.range_value) for name, value in data.data.items()}


def test_max_ranges_equal_onnx_runtimes_minmax_calibrator(graph, tmp_path):
    ours = compute_stats(graph, iter(images(6)), method="max").ranges
    reference = ort_ranges(graph, tmp_path, "max")
    assert set(ours) == set(reference)
    for name in reference:
        np.testing.assert_allclose(ours[name], reference[name], rtol=1e-6, atol=1e-6, err_msg=name)


def test_entropy_ranges_equal_onnx_runtimes_when_nothing_is_sampled(graph, tmp_path, monkeypatch):
    monkeypatch.setattr(activations, "MAX_SAMPLES", 1 << 40)  # every value, as ORT
    ours = compute_stats(graph, iter(images(6)), method="entropy").ranges
    reference = ort_ranges(graph, tmp_path, "entropy")
    assert set(ours) == set(reference)
    for name in reference:  # bincount and np.histogram could only differ for a value on a bin edge
        np.testing.assert_allclose(ours[name], reference[name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_sampled_entropy_stays_close(graph, monkeypatch):
    full = compute_stats(graph, iter(images(6)), method="entropy").ranges
    monkeypatch.setattr(activations, "MAX_SAMPLES", 1024)
    sampled = compute_stats(graph, iter(images(6)), method="entropy").ranges
    relative = [abs(sampled[n][1] - full[n][1]) / max(abs(full[n][1]), 1e-6) for n in full]
    assert np.median(relative) < 0.05


@pytest.mark.parametrize("shape", [(1, 64, 256, 256), (1, 256, 32, 32), (1, 49104, 91), (1, 3, 7, 9), (1, 8, 64, 64)])
def test_sample_step(shape):
    step = activations.sample_step(shape)
    size = int(np.prod(shape[1:]))
    if size <= activations.MAX_SAMPLES:
        assert step is None
    else:
        assert step % 2 == 1 and shape[-1] % step and step % shape[-1] and -(-size // step) <= activations.MAX_SAMPLES


@pytest.mark.parametrize("case", ["some outside", "all inside", "with nan", "empty"])
def test_symmetric_histogram_is_numpys(case):
    rng = np.random.default_rng(0)
    values = rng.normal(0, 2, 100_000).astype(np.float32)
    if case == "all inside":
        values = np.clip(values, -2.5, 2.5)
    elif case == "with nan":
        values[::7] = np.nan
    elif case == "empty":
        values = values[:0]
    for bins, limit in ((128, np.float32(3.0)), (301, np.float32(9.5))):
        expected = np.histogram(values, bins, range=(-limit, limit))[0]
        assert np.abs(activations.symmetric_histogram(values, bins, limit) - expected).sum() <= 2


def test_each_reduction_follows_its_producer(graph, tmp_path):
    network = tmp_path / "network.onnx"
    network_subgraph(graph, network)
    model = onnx.load(str(network))
    augmented, outputs = activations.augment(model, activations.tensors_to_calibrate(model), "max")
    position = {out: index for index, node in enumerate(augmented.graph.node) for out in node.output}
    for tensor, (low, _) in outputs.items():
        reduction = position[low]
        producer = position.get(tensor)  # None: the graph input, reduced first
        if producer is not None:  # nothing but other reductions between the producer and its reductions
            between = augmented.graph.node[producer + 1 : reduction]
            assert all(n.op_type in ("ReduceMin", "ReduceMax") for n in between), tensor
        else:
            assert all(n.op_type in ("ReduceMin", "ReduceMax") for n in augmented.graph.node[:reduction]), tensor


def test_tensors_shape_inference_cannot_size_are_sampled_too(tmp_path):
    """A Reshape to a shape computed at run time (as GroupNorm exports) has no static size; it is
    sized by one Shape-only run and sampled, not copied out whole (the v2 head's 82M values)."""
    from onnx import TensorProto, helper

    height = width = 200  # 120,000 values per tensor: above MAX_SAMPLES
    nodes = [helper.make_node("Shape", ["images"], ["shape"]),
             helper.make_node("Reshape", ["images", "shape"], ["reshaped"]),
             helper.make_node("Relu", ["reshaped"], ["out"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, height, width])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path / "dynamic.onnx"
    onnx.save(model, str(path))
    assert activations.tensors_to_calibrate(onnx.load(str(path)))["reshaped"] == (-1, -1, -1, -1)
    example = np.random.default_rng(0).standard_normal((1, 3, height, width)).astype(np.float32)
    probe = activations.ActivationProbe(path, "entropy", example)
    values = probe.run(example)
    assert set(values) == {"images", "reshaped", "out"}
    assert all(0 < sample.size <= activations.MAX_SAMPLES for (sample,) in values.values())
    assert not (tmp_path / "shapes.onnx").exists()
