"""build_engine, the TensorRT backend and Detector driven through the real TensorRT API (bound by
the stand-in): every precision and tail, every batch size of the profile, every build option, and
frame graphs (uint8 frames in)."""

from __future__ import annotations

import pytest
from assertions import same_detections
from graphs import BATCH, FRAME, PRECISIONS, TAILS, frame_graph_path, graph_path

from retina_edge.export.tensorrt_build import build_engine
from retina_edge.export.trt_plan import TrtBuildSettings, trt_major_version
from retina_edge.runtime import Detector
from retina_edge.data.synth import SynthConfig, render_image

IMAGES = [render_image(SynthConfig(seed=5), i)[0] for i in range(5)]


@pytest.mark.parametrize("tail", TAILS)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_engine_detects_like_its_graph_at_every_batch_size(trt_env, graphs, tmp_path, precision, tail):
    onnx = graph_path(graphs, precision, tail)
    engine = build_engine(onnx, tmp_path / "m.engine", TrtBuildSettings(batch=BATCH))
    header = trt_env.builds[-1]
    major = trt_major_version(trt_env.real.__version__)
    assert header["strongly_typed"] == (precision != "fp32" or major >= 11) and not header["flags"]
    with Detector(engine) as detector, Detector(onnx, backend="onnxruntime") as reference:
        assert detector.backend_name == "tensorrt" and detector.metadata.precision == precision
        for count in range(1, BATCH[2] + 1):
            same_detections(reference.detect(IMAGES[:count]), detector.detect(IMAGES[:count]))
        same_detections(reference.detect(IMAGES), detector.detect(IMAGES))  # 5 images: chunks of 4 and 1
    assert not trt_env.cuda.device and not trt_env.cuda.host and not trt_env.cuda.streams  # all freed


@pytest.mark.parametrize("precision", PRECISIONS)
def test_frame_engine_takes_uint8_frames_and_detects_like_its_graph(trt_env, graphs, tmp_path, precision):
    """The profile is over (B, H, W, 3) frames, the engine's input uint8; legacy flags are refused."""
    import cv2

    import numpy as np

    from retina_edge.errors import RetinaEdgeError

    onnx = frame_graph_path(graphs, precision)
    engine = build_engine(onnx, tmp_path / "m.engine", TrtBuildSettings(batch=BATCH))
    frames = [cv2.resize(image, FRAME[::-1]) for image in IMAGES]
    with Detector(engine) as detector, Detector(onnx, backend="onnxruntime") as reference:
        assert detector.backend.dtypes["images"] == np.uint8 and detector.metadata.frame.size == FRAME
        for count in range(1, BATCH[2] + 1):
            same_detections(reference.detect(frames[:count]), detector.detect(frames[:count]))
    if precision == "fp32" and trt_major_version(trt_env.real.__version__) < 11:
        with pytest.raises(RetinaEdgeError, match="frame steps"):
            build_engine(onnx, tmp_path / "legacy.engine", TrtBuildSettings(batch=BATCH, legacy_precision="fp16"))
