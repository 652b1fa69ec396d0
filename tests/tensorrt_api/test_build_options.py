"""Every build option of ``retina-edge build`` through the real API: workspace, optimization level,
timing cache (new, reused, foreign), hardware and version compatibility, DLA, the legacy FP16/INT8
flags (TensorRT 10) and their refusal (11), CUDA graphs, FP16 inputs and outputs."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
from graphs import BATCH, INPUT, graph_path
from standin import impl_of
from assertions import same_detections
from test_engine_path import IMAGES

from retina_edge.errors import RetinaEdgeError
from retina_edge.export.tensorrt_build import build_engine
from retina_edge.export.trt_plan import TrtBuildSettings, check_dla, trt_major_version
from retina_edge.runtime import Detector
from retina_edge.runtime.backends import BackendOptions
from retina_edge.runtime.tensorrt.engine_file import read_engine_file, write_engine_file


def build(graphs, tmp_path, precision: str = "fp16", tail: str = "decode", **settings):  # noqa: ANN001, ANN003, ANN201
    return build_engine(graph_path(graphs, precision, tail), tmp_path / f"{precision}-{tail}.engine",
                        TrtBuildSettings(batch=BATCH, **settings))


def major(env) -> int:  # noqa: ANN001
    return trt_major_version(env.real.__version__)


def test_workspace_and_optimization_levels(trt_env, graphs, tmp_path):
    for level in (0, 5):
        build(graphs, tmp_path, workspace_bytes=1 << 28, optimization_level=level)
        assert trt_env.builds[-1]["optimization_level"] == level and trt_env.builds[-1]["pools"] == {"WORKSPACE": 1 << 28}


def test_timing_cache_new_then_reused_and_foreign_replaced(trt_env, graphs, tmp_path, caplog):
    cache = tmp_path / "timing.cache"
    build(graphs, tmp_path, timing_cache=str(cache))
    assert cache.is_file() and trt_env.builds[-1]["timing_cache_entries_before"] == 0
    build(graphs, tmp_path, timing_cache=str(cache))
    assert trt_env.builds[-1]["timing_cache_entries_before"] > 0  # the first build's timings were reused
    cache.write_bytes(b"TIMING-CACHE 9.9.9 40")  # made by another TensorRT version
    with caplog.at_level(logging.WARNING):
        build(graphs, tmp_path, timing_cache=str(cache))
    assert "another GPU or TensorRT version" in caplog.text and trt_env.builds[-1]["timing_cache_entries_before"] == 0


def test_hardware_compatible_engines_run_on_another_gpu(trt_env, graphs, tmp_path):
    plain = build(graphs, tmp_path, tail="none")
    portable = build(graphs, tmp_path, tail="nms", hardware_compatible=True)
    assert trt_env.builds[-1]["hardware_compatibility"] == "AMPERE_PLUS"
    trt_env.cuda.device_name = "NVIDIA A100-SXM4-80GB"
    with Detector(portable) as detector:
        detector.detect(IMAGES[:1])
    with pytest.raises(RetinaEdgeError, match="specific to the GPU model"):
        Detector(plain)


def test_hardware_compatible_engines_record_the_compute_capability_and_need_ampere(trt_env, graphs, tmp_path):
    portable = build(graphs, tmp_path, tail="nms", hardware_compatible=True)
    assert read_engine_file(portable).header["device"] == {"name": "NVIDIA Orin", "compute_capability": "8.7"}
    trt_env.cuda.device_name, trt_env.cuda.compute_capability = "Tesla T4", (7, 5)
    with pytest.raises(RetinaEdgeError, match="hardware-compatible .* compute capability 7.5 .*'Tesla T4'"):
        Detector(portable)


def test_version_compatible_engine_of_a_newer_release_is_refused_in_our_words(trt_env, graphs, tmp_path):
    engine = read_engine_file(build(graphs, tmp_path, version_compatible=True))
    built = trt_env.real.__version__.split(".")
    newer = ".".join([built[0], str(int(built[1]) + 1), *built[2:]])
    relabelled = write_engine_file(tmp_path / "newer.engine", engine.plan, metadata=engine.deployment, tensorrt_version=newer,
                                   device=engine.header["device"], build=engine.header["build"])
    with pytest.raises(RetinaEdgeError, match=f"built with TensorRT {newer}, newer than the installed"):
        Detector(relabelled)


def test_version_compatible_engines_load_with_host_code_allowed(trt_env, graphs, tmp_path):
    engine = build(graphs, tmp_path, version_compatible=True)
    assert trt_env.builds[-1]["version_compatible"] and trt_env.builds[-1]["lean_runtime"]
    with Detector(engine) as detector, Detector(graph_path(graphs, "fp16", "decode"), backend="onnxruntime") as reference:
        same_detections(reference.detect(IMAGES[:2]), detector.detect(IMAGES[:2]))


def test_dla_builds_where_tensorrt_has_it_and_is_refused_elsewhere(trt_env, graphs, tmp_path):
    trt_env.dla_cores = 2
    version = trt_env.real.__version__
    try:
        check_dla(version, "int8", None)
    except RetinaEdgeError:
        with pytest.raises(RetinaEdgeError, match="has no DLA support"):
            build(graphs, tmp_path, precision="int8", dla_core=1)
        return
    engine = build(graphs, tmp_path, precision="int8", dla_core=1)
    assert trt_env.builds[-1]["dla_core"] == 1 and "GPU_FALLBACK" in trt_env.builds[-1]["flags"]
    with Detector(engine) as detector:
        assert impl_of(detector.backend.engine).runtime_dla_core == 1  # the runtime runs it on that core
    with pytest.raises(RetinaEdgeError, match="DLA runs FP16 and INT8 only"):
        build(graphs, tmp_path, precision="fp32", dla_core=0)


def test_legacy_fp16_flag_on_10_refused_on_11(trt_env, graphs, tmp_path):
    if major(trt_env) >= 11:
        with pytest.raises(RetinaEdgeError, match="removed the FP16/INT8 builder flags"):
            build(graphs, tmp_path, precision="fp32", legacy_precision="fp16")
        return
    engine = build(graphs, tmp_path, precision="fp32", legacy_precision="fp16")
    assert trt_env.builds[-1]["flags"] == ["FP16"] and not trt_env.builds[-1]["strongly_typed"]
    with Detector(engine) as detector:
        assert detector.metadata.precision == "fp16"
        detector.detect(IMAGES[:3])


@pytest.mark.parametrize("algorithm", ["EntropyCalibration2", "MinMaxCalibration"])
def test_legacy_int8_replays_the_cache_with_its_own_calibrator(trt_env, graphs, tmp_path, algorithm):
    text = (graphs / "int8-decode.calib.cache").read_text()
    header, _, body = text.partition("\n")
    cache = tmp_path / "legacy.calib.cache"
    cache.write_text(f"TRT-100300-{algorithm}\n{body}")  # written by 10.3, replayed here
    if major(trt_env) >= 11:
        with pytest.raises(RetinaEdgeError, match="removed the FP16/INT8 builder flags"):
            build(graphs, tmp_path, precision="fp32", legacy_precision="int8", calibration_cache=str(cache))
        return
    engine = build(graphs, tmp_path, precision="fp32", legacy_precision="int8", calibration_cache=str(cache))
    assert trt_env.builds[-1]["flags"] == ["FP16", "INT8"] and not trt_env.errors
    with Detector(engine) as detector:
        assert detector.metadata.precision == "int8" and detector.metadata.target == "tensorrt"


def test_legacy_int8_with_the_wrong_calibrator_class_fails_the_build(trt_env, graphs, tmp_path, monkeypatch):
    """The defect this replaced: every cache replayed through an entropy calibrator."""
    if major(trt_env) >= 11:
        assert not hasattr(trt_env.real, "IInt8Calibrator")  # calibrators are gone: nothing to replay
        return
    import retina_edge.export.tensorrt_build as module

    monkeypatch.setitem(module.LEGACY_CALIBRATORS, "MinMaxCalibration", "IInt8EntropyCalibrator2")
    cache = tmp_path / "minmax.calib.cache"
    cache.write_text("TRT-100300-MinMaxCalibration\n" + (graphs / "int8-decode.calib.cache").read_text().partition("\n")[2])
    with pytest.raises(RetinaEdgeError, match="failed to build"):
        build(graphs, tmp_path, precision="fp32", legacy_precision="int8", calibration_cache=str(cache))
    assert "Calibration failure" in trt_env.errors[-1]


def test_cuda_graphs_replay_and_are_recaptured_per_batch_size(trt_env, graphs, tmp_path):
    engine = build(graphs, tmp_path, precision="fp32", tail="nms")
    sizes = (1, 2, 2, 4, 1)
    with Detector(engine, options=BackendOptions(cuda_graph=True)) as graphed, Detector(graph_path(graphs, "fp32", "nms"), backend="onnxruntime") as reference:
        for count in sizes:
            same_detections(reference.detect(IMAGES[:count]), graphed.detect(IMAGES[:count]))
        assert trt_env.cuda.launches == len(sizes) and len(trt_env.cuda.graph_execs) == 1  # replaced graphs destroyed
    assert not trt_env.cuda.graph_execs and not trt_env.cuda.graphs


def test_fp16_inputs_and_outputs(trt_env, graphs, tmp_path):
    """An engine whose I/O tensors are HALF: pinned FP16 buffers, cast on the way in and out."""
    path = tmp_path / "half-io.onnx"
    _half_io(graph_path(graphs, "fp32", "none"), path)
    engine = build_engine(path, tmp_path / "half-io.engine", TrtBuildSettings(batch=BATCH))
    with Detector(engine) as detector:
        assert {detector.backend.dtypes[n] for n in detector.backend.dtypes} == {np.dtype(np.float16)}
        assert len(detector.detect(IMAGES[:3])) == 3


def _half_io(source, target) -> None:  # noqa: ANN001
    """Rewrite a float32 graph to take and give float16 (Casts at the boundary), keeping its metadata."""
    model = onnx.load(str(source))
    graph = model.graph
    renamed = {value.name: value.name + "_f32" for value in [*graph.input, *graph.output]}
    for node in graph.node:
        for fields in (node.input, node.output):
            for index, name in enumerate(fields):
                fields[index] = renamed.get(name, name)
    to_float = [onnx.helper.make_node("Cast", [v.name], [renamed[v.name]], to=onnx.TensorProto.FLOAT) for v in graph.input]
    to_half = [onnx.helper.make_node("Cast", [renamed[v.name]], [v.name], to=onnx.TensorProto.FLOAT16) for v in graph.output]
    nodes = [*to_float, *graph.node, *to_half]
    del graph.node[:]
    graph.node.extend(nodes)
    for value in [*graph.input, *graph.output]:
        value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    onnx.save(model, str(target))


def test_an_unparsable_graph_is_one_clear_error(trt_env, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    from retina_edge.config import ModelConfig
    from retina_edge.contract import DeploymentMetadata, GraphTail
    from retina_edge.preprocess import PreprocessConfig

    metadata = DeploymentMetadata(model=ModelConfig(), preprocess=PreprocessConfig(*INPUT), tail=GraphTail("none"))
    with pytest.raises(RetinaEdgeError, match="TensorRT cannot parse"):
        build_engine(broken, tmp_path / "m.engine", TrtBuildSettings(batch=BATCH), metadata=metadata)
    assert not (tmp_path / "m.engine").exists()


def test_legacy_build_warns_that_it_rides_deprecated_apis(trt_env, graphs, tmp_path, caplog):
    if major(trt_env) >= 11:
        return  # refused before TensorRT is touched (test_legacy_fp16_flag_on_10_refused_on_11)
    with caplog.at_level(logging.WARNING):
        build(graphs, tmp_path, precision="fp32", legacy_precision="fp16")
    assert "deprecated" in caplog.text
