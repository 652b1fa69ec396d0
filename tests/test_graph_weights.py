"""Graph rewrites with the weights on disk (export/graph_weights.py): the exporter's simplification
and calibration's derived graphs never hold the conv weights in memory, and give the graphs that
the same steps give with the weights loaded."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from retina_edge.model.retinanet import build_model
from retina_edge.calib import activations
from retina_edge.calib.statistics import network_subgraph
from retina_edge.export import onnx_export
from retina_edge.export.onnx_export import ExportOptions, export_onnx
from retina_edge.preprocess import PreprocessConfig

OPTIONS = ExportOptions(preprocess=PreprocessConfig(192, 192), batch=(1, 1, 2))


def tiny(arch: str):  # noqa: ANN201
    torch.manual_seed(0)
    return build_model(arch, num_classes=3, backbone_width=16, fpn_channels=32, head_convs=1).eval()


def run(path, image: np.ndarray) -> list[np.ndarray]:  # noqa: ANN001
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": image})


@pytest.mark.parametrize(("arch", "light"), [("resnet18_fpn_v2", True), ("resnet18_fpn", False)])
def test_export_simplifies_without_the_weights_and_gives_the_same_graph(arch, light, tmp_path, monkeypatch):
    """v2 (GroupNorm) simplifies with the conv weights as inputs; v1's FrozenBatchNorm folding needs
    their values and runs again with them. Either way: the graph simplifying it whole gives."""
    model = tiny(arch)
    plain = export_onnx(model, tmp_path / "plain.onnx", ExportOptions(**{**OPTIONS.__dict__, "simplify": False}))
    reference = onnx_export._simplify(onnx.load(str(plain)))
    largest = []
    simplify = onnx_export._simplify

    def recording(graph):  # noqa: ANN001, ANN202
        largest.append(max(len(init.raw_data) for init in graph.graph.initializer))
        return simplify(graph)

    monkeypatch.setattr(onnx_export, "_simplify", recording)
    exported = onnx.load(str(export_onnx(model, tmp_path / "m.onnx", OPTIONS)))
    conv_weight_bytes = min(len(i.raw_data) for i in reference.graph.initializer if len(i.dims) == 4)
    assert largest[0] < conv_weight_bytes  # the first attempt never saw a conv weight
    assert len(largest) == (1 if light else 2)
    assert [n.op_type for n in exported.graph.node] == [n.op_type for n in reference.graph.node]
    assert not any(init.data_location for init in exported.graph.initializer)  # one self-contained file
    image = np.random.default_rng(0).random((1, 3, 192, 192), np.float32)
    onnx.save(reference, str(tmp_path / "reference.onnx"))
    for ours, theirs in zip(run(tmp_path / "m.onnx", image), run(tmp_path / "reference.onnx", image)):
        np.testing.assert_array_equal(ours, theirs)


def test_calibration_graphs_share_one_weights_file(tmp_path, monkeypatch):
    """The network subgraph, the Shape-only graph and the augmented graph reference the weights
    written once beside them; the Shape nodes follow their tensors' producers (appended at the
    end, every activation of the Shape-only run stayed alive: 1.1 GB for ResNet-50 v2)."""
    graph = export_onnx(tiny("resnet18_fpn_v2"), tmp_path / "m.onnx", OPTIONS)
    network = tmp_path / "calib" / "network.onnx"
    network.parent.mkdir()
    network_subgraph(graph, network)
    assert network.stat().st_size < graph.stat().st_size / 10
    weights = list(network.parent.glob("*.weights"))
    assert len(weights) == 1
    sessions = []
    open_session = activations._session

    def recording(path):  # noqa: ANN001, ANN202
        sessions.append(onnx.load(str(path), load_external_data=False))
        return open_session(path)

    monkeypatch.setattr(activations, "_session", recording)
    example = np.random.default_rng(0).random((1, 3, 192, 192), np.float32)
    activations.ActivationProbe(network, "entropy", example).run(example)
    shape_graph = next(g for g in sessions if any(n.op_type == "Shape" and n.output[0].startswith("calib_shape_")
                                                  for n in g.graph.node))
    nodes = list(shape_graph.graph.node)
    position = {out: index for index, node in enumerate(nodes) for out in node.output}
    for index, node in enumerate(nodes):
        if node.output[0].startswith("calib_shape_"):
            producer = position.get(node.input[0], -1)
            assert all(n.output[0].startswith("calib_shape_") for n in nodes[producer + 1 : index]), node.input[0]
    for derived in sessions:
        assert all(init.data_location == init.EXTERNAL for init in derived.graph.initializer if len(init.dims) == 4)
    assert set(network.parent.glob("*.weights")) == set(weights)


def test_written_model_parses_to_the_same_model(tmp_path):
    """write_model serializes one initializer at a time; the file must parse to the model that
    onnx.save would have written, metadata, opsets and all, and run the same."""
    from retina_edge.export.graph_weights import write_model
    from retina_edge.runtime.core.model_file import read_deployment

    path = export_onnx(tiny("resnet18_fpn"), tmp_path / "m.onnx", OPTIONS)
    model = onnx.load(str(path))
    assert len(model.graph.initializer) > 20 and model.metadata_props and model.opset_import
    write_model(model, tmp_path / "streamed.onnx")
    onnx.save(model, str(tmp_path / "saved.onnx"))
    streamed = onnx.load(str(tmp_path / "streamed.onnx"))
    assert streamed == model == onnx.load(str(tmp_path / "saved.onnx"))
    assert read_deployment(tmp_path / "streamed.onnx") == read_deployment(path)
    image = np.random.default_rng(0).random((1, 3, 192, 192), np.float32)
    for mine, reference in zip(run(tmp_path / "streamed.onnx", image), run(path, image)):
        np.testing.assert_array_equal(mine, reference)


def test_a_model_over_protobufs_limit_is_refused_before_writing(tmp_path, monkeypatch):
    from retina_edge.errors import RetinaEdgeError
    from retina_edge.export import graph_weights

    model = onnx.load(str(export_onnx(tiny("resnet18_fpn"), tmp_path / "m.onnx", OPTIONS)))
    monkeypatch.setattr(graph_weights, "PROTOBUF_LIMIT", model.ByteSize())  # the file would be exactly this long
    with pytest.raises(RetinaEdgeError, match="over protobuf's 2 GiB limit"):
        graph_weights.write_model(model, tmp_path / "big.onnx")
    assert not (tmp_path / "big.onnx").exists()
    monkeypatch.setattr(graph_weights, "PROTOBUF_LIMIT", model.ByteSize() + 1)
    graph_weights.write_model(model, tmp_path / "fits.onnx")
    assert onnx.load(str(tmp_path / "fits.onnx")) == model
