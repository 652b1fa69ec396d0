"""Every graph the toolkit writes loads and runs on every installed CPU runtime: FP32, FP16, INT8
for both placements, and the AP-budget search's INT8 graph with its stem conv kept as an FP16
island (a Cast right after the input, which gives the input a second name in OpenVINO), each tail."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest

from retina_edge.calib.build import BuildOptions, CalibrationOptions, build_precision_graph
from retina_edge.calib.search import keep_high_precision, quantized_layers
from retina_edge.data.synth import SynthConfig, render_image
from retina_edge.export.onnx_export import ExportOptions
from retina_edge.imageio import write_image_rgb
from retina_edge.preprocess import PreprocessConfig
from retina_edge.runtime import Detector
from tiny import tiny_model

TAILS = ("none", "decode", "nms")
BACKENDS = [name for name in ("onnxruntime", "openvino") if importlib.util.find_spec(name) is not None]
SCENES = [render_image(SynthConfig(seed=3), i)[0] for i in range(2)]


def stem_kept_in_fp16(qdq_path, fp32_path, output):  # noqa: ANN001, ANN201
    """What the search writes when keeping the stem conv (the layer reading the input) in FP16."""
    qdq, fp32 = onnx.load(str(qdq_path)), onnx.load(str(fp32_path))
    producer = {o: n for n in qdq.graph.node for o in n.output}
    reads_input = lambda n: any(producer.get(producer[i].input[0]) is not None and  # noqa: E731
                                producer[producer[i].input[0]].input[0] == "images" for i in n.input if i in producer)
    stem = [n.name for n in qdq.graph.node if n.name in set(quantized_layers(qdq)) and reads_input(n)]
    assert len(stem) == 1, stem
    kept = keep_high_precision(qdq, fp32, stem, high="fp16")  # keeps the metadata of the INT8 graph
    assert any(n.op_type == "Cast" and n.input[0] == "images" for n in kept.graph.node)
    onnx.save(kept, str(output))
    return output


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):  # noqa: ANN001, ANN201
    root = tmp_path_factory.mktemp("every-graph")
    for index in range(8):
        write_image_rgb(root / "calib" / f"{index}.jpg", render_image(SynthConfig(seed=2), index)[0])
    calibration = CalibrationOptions(source=str(root / "calib"), count=8, min_images=8, cache_dir=root / "cache")
    model, paths = tiny_model(), {}
    for tail in TAILS:
        export = ExportOptions(preprocess=PreprocessConfig(64, 96), tail=tail, batch=(1, 1, 2))
        for precision, target in (("fp32", "cpu"), ("fp16", "cpu"), ("int8", "cpu"), ("int8", "tensorrt")):
            if tail != "decode" and precision == "fp16":
                continue  # the tails differ after the network; one FP16 conversion covers it
            name = f"{precision}-{target}-{tail}"
            build = BuildOptions(precision=precision, target=target, calibration=calibration if precision == "int8" else None)
            paths[name] = build_precision_graph(model, root / f"{name}.onnx", export=export, build=build).model_path
        paths[f"search-stem-fp16-{tail}"] = stem_kept_in_fp16(paths[f"int8-tensorrt-{tail}"], paths[f"fp32-cpu-{tail}"],
                                                               root / f"search-{tail}.onnx")
    return paths


GRAPHS = [f"{p}-{tail}" for tail in TAILS for p in ("fp32-cpu", "fp16-cpu", "int8-cpu", "int8-tensorrt", "search-stem-fp16")
          if tail == "decode" or p != "fp16-cpu"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("graph", GRAPHS)
def test_every_graph_loads_and_detects_on_every_runtime(graphs, graph, backend):
    with Detector(graphs[graph], backend=backend) as detector:
        found = detector.detect(SCENES)
    assert len(found) == 2 and all(len(f.boxes) for f in found)  # the tiny model finds hundreds
    for f in found:
        assert f.boxes.shape[1] == 4 and np.all(f.scores >= detector.metadata.score_thresh)
