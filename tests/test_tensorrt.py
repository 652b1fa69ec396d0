"""TensorRT: build decisions (run everywhere) and real engines (only where TensorRT and a GPU exist)."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch

from retina_edge.errors import RetinaEdgeError
from retina_edge.export.trt_plan import TrtBuildSettings, plan_precision, profile_shapes, trt_major_version
from retina_edge.preprocess import PreprocessConfig

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
needs_tensorrt = pytest.mark.skipif(not HAS_TENSORRT, reason="TensorRT is not installed (NVIDIA's index or JetPack)")


def test_precision_graphs_build_strongly_typed_on_10_and_11():
    for major in (10, 11):
        plan = plan_precision(major, "int8-tensorrt", TrtBuildSettings())
        assert plan.strongly_typed and not plan.fp16_flag and not plan.int8_flag


def test_fp32_graph_is_strongly_typed_only_on_11():
    assert plan_precision(11, "fp32", TrtBuildSettings()).strongly_typed
    assert not plan_precision(10, "fp32", TrtBuildSettings()).strongly_typed


def test_legacy_flags_on_10_and_refused_on_11():
    plan = plan_precision(10, "fp32", TrtBuildSettings(legacy_precision="int8", calibration_cache="m.calib.cache"))
    assert plan.int8_flag and plan.fp16_flag and plan.use_calibration_cache
    with pytest.raises(RetinaEdgeError, match="removed the FP16/INT8 builder flags"):
        plan_precision(11, "fp32", TrtBuildSettings(legacy_precision="fp16"))
    with pytest.raises(RetinaEdgeError, match="calibration cache"):
        plan_precision(10, "fp32", TrtBuildSettings(legacy_precision="int8"))
    with pytest.raises(RetinaEdgeError, match="already fp16"):
        plan_precision(10, "fp16", TrtBuildSettings(legacy_precision="fp16"))


def test_profile_shapes_and_versions():
    assert profile_shapes((1, 4, 8), (3, 256, 320)) == ((1, 3, 256, 320), (4, 3, 256, 320), (8, 3, 256, 320))
    assert profile_shapes((1, 1, 2), (720, 1280, 3)) == ((1, 720, 1280, 3), (1, 720, 1280, 3), (2, 720, 1280, 3))
    with pytest.raises(RetinaEdgeError):
        profile_shapes((4, 1, 8), (3, 256, 320))
    assert trt_major_version("10.3.0.26") == 10 and trt_major_version("11.0.0") == 11


@pytest.mark.tensorrt
@pytest.mark.gpu
@needs_tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_matches_onnxruntime(tmp_path, precision):
    """Build an engine from each precision graph, run it, compare with ONNX Runtime on the same graph."""
    from retina_edge.model.retinanet import build_model
    from retina_edge.calib.build import BuildOptions, CalibrationOptions, build_precision_graph
    from retina_edge.export.onnx_export import ExportOptions
    from retina_edge.export.tensorrt_build import build_engine
    from retina_edge.imageio import write_image_rgb
    from retina_edge.metrics.matching import MatchTolerance, match_detections
    from retina_edge.runtime import Detector
    from retina_edge.data.synth import SynthConfig, render_image

    images = [render_image(SynthConfig(seed=2), i)[0] for i in range(16)]
    for index, image in enumerate(images):
        write_image_rgb(tmp_path / "calib" / f"{index}.jpg", image)
    torch.manual_seed(0)
    model = build_model("resnet18_fpn", num_classes=3, backbone_width=16, fpn_channels=32, head_convs=1, score_thresh=0.2).eval()
    with torch.no_grad():
        model.head.classification_head.cls_logits.bias.add_(3.5)
    onnx_path = tmp_path / f"{precision}.onnx"
    build_precision_graph(model, onnx_path, export=ExportOptions(preprocess=PreprocessConfig(128, 160), batch=(1, 2, 4)), build=BuildOptions(precision=precision, target="tensorrt", calibration=CalibrationOptions(str(tmp_path / "calib"), count=16, min_images=8, cache_dir=tmp_path)))
    engine = build_engine(onnx_path, tmp_path / f"{precision}.engine", TrtBuildSettings(batch=(1, 2, 4)))
    trt_results = Detector(engine).detect(images[:4])
    ort_results = Detector(onnx_path, backend="onnxruntime").detect(images[:4])
    matched = total = 0
    for ref, got in zip(ort_results, trt_results):
        result = match_detections(ref.as_tuple(), got.as_tuple(), MatchTolerance(iou_thresh=0.9, score_tol=0.05))
        matched, total = matched + result.matched, total + result.num_reference
    assert total and matched / total >= (0.99 if precision == "fp32" else 0.9)
    np.testing.assert_equal(len(trt_results), 4)


def test_missing_cuda_binding_is_a_clear_error(monkeypatch):
    import retina_edge.runtime.tensorrt.cuda_memory as cuda_memory
    from retina_edge.errors import MissingDependencyError

    monkeypatch.setattr(cuda_memory, "_cudart", lambda: None)  # no cuda-python
    monkeypatch.setitem(sys.modules, "pycuda", None)  # and no pycuda: importing them fails
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    with pytest.raises(MissingDependencyError, match="cuda-python"):
        cuda_memory.cuda_api()


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_engine_without_tensorrt_is_a_clear_error(tmp_path):
    from retina_edge.errors import MissingDependencyError
    from retina_edge.runtime import Detector
    from retina_edge.runtime.tensorrt.engine_file import write_engine_file

    from retina_edge.config import ModelConfig
    from retina_edge.contract import DeploymentMetadata, GraphTail
    from retina_edge.preprocess import PreprocessConfig

    metadata = DeploymentMetadata(model=ModelConfig(), preprocess=PreprocessConfig(128, 128), tail=GraphTail("none"))
    engine = write_engine_file(tmp_path / "m.engine", b"plan", metadata=metadata, tensorrt_version="10.3.0",
                               device={"name": "Orin"}, build={})
    with pytest.raises(MissingDependencyError, match="tensorrt"):
        Detector(engine)
