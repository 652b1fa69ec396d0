"""A graph made by quantization-aware training (``retina-edge qat``) takes the engine path as
``build --int8``'s graphs do: strongly typed, no precision flags, and the engine detects like the
graph at every batch size of the profile."""

from __future__ import annotations

from assertions import same_detections
from graphs import BATCH, qat_graph_path

from retina_edge.data.synth import SynthConfig, render_image
from retina_edge.export.tensorrt_build import build_engine
from retina_edge.export.trt_plan import TrtBuildSettings
from retina_edge.runtime import Detector

IMAGES = [render_image(SynthConfig(seed=5), i)[0] for i in range(5)]


def test_qat_graph_builds_and_detects_like_its_graph(trt_env, graphs, tmp_path):
    onnx = qat_graph_path(graphs)
    engine = build_engine(onnx, tmp_path / "qat.engine", TrtBuildSettings(batch=BATCH))
    header = trt_env.builds[-1]
    assert header["strongly_typed"] and not header["flags"]
    with Detector(engine) as detector, Detector(onnx, backend="onnxruntime") as reference:
        assert detector.backend_name == "tensorrt"
        assert (detector.metadata.precision, detector.metadata.target) == ("int8", "tensorrt")
        for count in range(1, BATCH[2] + 1):
            same_detections(reference.detect(IMAGES[:count]), detector.detect(IMAGES[:count]))
    assert not trt_env.cuda.device and not trt_env.cuda.host and not trt_env.cuda.streams
