"""Calibration sources, cached statistics, and FP16 / INT8 graphs that run under ONNX Runtime."""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from retina_edge.model.retinanet import build_model
from retina_edge.calib import build as build_module
from retina_edge.calib.build import BuildOptions, CalibrationOptions, build_precision_graph
from retina_edge.calib.precision import excluded_nodes, read_trt_calibration_cache, write_trt_calibration_cache
from retina_edge.calib.sources import CalibrationReport, calibration_batches, collect_calibration_items
from retina_edge.calib.statistics import ActivationStats
from retina_edge.cli.main import main
from retina_edge.errors import DataError
from retina_edge.export.onnx_export import ExportOptions
from retina_edge.runtime.core.model_file import read_deployment
from retina_edge.imageio import write_image_rgb
from retina_edge.preprocess import PreprocessConfig, preprocess_batch
from retina_edge.data.synth import SynthConfig, render_image

PREPROCESS = PreprocessConfig(128, 160)


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calib")
    for index in range(24):
        write_image_rgb(folder / f"img{index:02d}.jpg", render_image(SynthConfig(seed=9), index)[0])
    return folder


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("resnet18_fpn", num_classes=3, backbone_width=16, fpn_channels=32, head_convs=1, norm="bn").eval()


def run(path, batch):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": batch})


def test_folder_with_corrupt_and_non_image_files(calib_dir, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(calib_dir, folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub").mkdir()
    (folder / "sub" / "empty.png").write_bytes(b"")
    report = CalibrationReport()
    items = collect_calibration_items(str(folder), count=100, report=report)
    batches = list(calibration_batches(items, PREPROCESS, count=100, batch_size=8, report=report))
    assert sum(len(b) for b, _ in batches) == 24
    assert (report.used, report.unreadable, report.not_images) == (24, 2, 1)
    assert batches[0][0].shape == (8, 3, 128, 160)


def test_batches_use_the_runtime_preprocessing(calib_dir):
    items = collect_calibration_items(str(calib_dir), count=4, seed=1)
    batch, keys = next(calibration_batches(items, PREPROCESS, count=4, batch_size=4))
    from retina_edge.imageio import read_image_rgb

    expected, _ = preprocess_batch([read_image_rgb(k) for k in keys], PREPROCESS)
    np.testing.assert_array_equal(batch, expected)


def test_seeded_shuffle_is_stable(calib_dir):
    first = collect_calibration_items(str(calib_dir), count=5, seed=3)
    again = collect_calibration_items(str(calib_dir), count=5, seed=3)
    other = collect_calibration_items(str(calib_dir), count=5, seed=4)
    assert first == again and first != other


def test_empty_and_missing_sources_fail_clearly(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        collect_calibration_items(str(tmp_path / "empty"), count=10)
    with pytest.raises(DataError, match="not found"):
        collect_calibration_items(str(tmp_path / "nope" / "*.jpg"), count=10)


def test_too_few_usable_images(calib_dir, tmp_path):
    folder = tmp_path / "few"
    folder.mkdir()
    shutil.copy(calib_dir / "img00.jpg", folder)
    (folder / "bad.jpg").write_bytes(b"junk")
    items = collect_calibration_items(str(folder), count=10)
    with pytest.raises(DataError, match="only 1 usable"):
        list(calibration_batches(items, PREPROCESS, count=10, batch_size=4, min_images=8))


def test_video_and_glob_sources(calib_dir, tmp_path):
    import cv2

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 128))
    for index in range(30):
        writer.write(np.full((128, 160, 3), index * 8, dtype=np.uint8))
    writer.release()
    items = collect_calibration_items(str(video), count=100, video_stride=10)
    assert sorted(i.frame for i in items) == [0, 10, 20]
    batch, _ = next(calibration_batches(items, PREPROCESS, count=3, batch_size=3))
    assert batch.shape == (3, 3, 128, 160)
    globbed = collect_calibration_items(str(calib_dir / "img1*.jpg"), count=100)
    assert len(globbed) == 10


def test_trt_cache_format_round_trip(tmp_path):
    stats = ActivationStats("entropy", {"images": (-2.0, 2.5), "/backbone/relu": (0.0, 12.7)}, 8)
    path = write_trt_calibration_cache(stats, tmp_path / "model.calib.cache")
    lines = path.read_text().splitlines()
    assert lines[0] == "TRT-100300-EntropyCalibration2"
    scales = read_trt_calibration_cache(path)
    assert scales["/backbone/relu"] == pytest.approx(0.1, rel=1e-6)
    assert scales["images"] == pytest.approx(2.5 / 127, rel=1e-6)


def test_precision_graphs_run_and_stay_close(model, calib_dir, tmp_path, monkeypatch):
    export = ExportOptions(preprocess=PREPROCESS, batch=(1, 1, 4))
    calibration = CalibrationOptions(source=str(calib_dir), count=16, min_images=8, cache_dir=tmp_path / "cache")
    batch, _ = next(calibration_batches(collect_calibration_items(str(calib_dir), count=2), PREPROCESS, count=2, batch_size=2))
    outputs, counts = {}, {}
    for precision, target in [("fp32", "cpu"), ("fp16", "cpu"), ("int8", "tensorrt"), ("int8", "cpu")]:
        path = tmp_path / f"{precision}-{target}.onnx"
        build_precision_graph(model, path, export=export, build=BuildOptions(precision=precision, target=target, calibration=calibration))
        outputs[precision, target] = run(path, batch)
        counts[precision, target] = Counter(n.op_type for n in onnx.load(str(path)).graph.node)
        metadata = read_deployment(path)
        assert (metadata.precision, metadata.target) == (precision, target if precision == "int8" else "any")
    fp32_scores = outputs["fp32", "cpu"][1]
    assert np.abs(outputs["fp16", "cpu"][1] - fp32_scores).max() < 2e-3
    for target in ("tensorrt", "cpu"):
        assert counts["int8", target]["QuantizeLinear"] > 20
        diff = np.abs(outputs["int8", target][1] - fp32_scores).max()
        assert 0 < diff < 0.05, diff  # really quantised, still close
    assert counts["fp16", "cpu"]["Cast"] >= 2 and counts["fp32", "cpu"]["QuantizeLinear"] == 0
    assert (tmp_path / "int8-tensorrt.calib.cache").is_file()


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_int8_nms_graph_calibrates_its_network_only(model, calib_dir, tmp_path, target):
    """NMS keeps a different number of boxes per image, so tail tensors change shape between
    calibration images; only the network is calibrated, and it is quantised as in other graphs."""
    import json

    export = ExportOptions(preprocess=PREPROCESS, tail="nms", batch=(1, 1, 4))
    calibration = CalibrationOptions(source=str(calib_dir), count=16, min_images=8, cache_dir=tmp_path / "cache")
    path = tmp_path / "int8-nms.onnx"
    build_precision_graph(model, path, export=export, build=BuildOptions(precision="int8", target=target, calibration=calibration))
    assert Counter(n.op_type for n in onnx.load(str(path)).graph.node)["QuantizeLinear"] > 20
    (stats_file,) = (tmp_path / "cache").glob("*.json")
    ranges = json.loads(stats_file.read_text())["ranges"]
    assert "images" in ranges and not {"det_boxes", "det_scores", "num_detections"} & set(ranges)
    batch, _ = next(calibration_batches(collect_calibration_items(str(calib_dir), count=2), PREPROCESS, count=2,
                                        batch_size=2))
    num_detections = run(path, batch)[0]
    assert num_detections.shape == (2, 1)


def test_statistics_are_cached_across_rebuilds(model, calib_dir, tmp_path, monkeypatch):
    export = ExportOptions(preprocess=PREPROCESS, batch=(1, 1, 1))
    calibration = CalibrationOptions(source=str(calib_dir), count=8, min_images=4, cache_dir=tmp_path / "cache")
    first = build_precision_graph(model, tmp_path / "a.onnx", export=export, build=BuildOptions(precision="int8", target="cpu", calibration=calibration))
    assert not first.stats_cached and first.report.used == 8

    def no_recompute(*args, **kwargs):
        raise AssertionError("calibration ran again")

    monkeypatch.setattr(build_module, "compute_stats", no_recompute)
    second = build_precision_graph(model, tmp_path / "b.onnx", export=export, build=BuildOptions(precision="int8", target="tensorrt", calibration=calibration, keep_predictors=True))
    assert second.stats_cached


@pytest.mark.parametrize("postprocess", ["none", "decode", "nms"])
def test_excluded_nodes_are_the_tail_and_optionally_the_predictors(model, tmp_path, postprocess):
    import onnx

    from retina_edge.export.onnx_export import export_onnx

    path = export_onnx(model, tmp_path / "m.onnx", ExportOptions(preprocess=PREPROCESS, tail=postprocess))
    tail = excluded_nodes(path, keep_predictors=False)
    with_predictors = excluded_nodes(path, keep_predictors=True)
    nodes = [n.name for n in onnx.load(str(path)).graph.node]
    # every graph tail keeps the network's scopes, so precision placement finds the network in each
    for scope in ("/backbone/", "/head/"):
        assert any(n.startswith(scope) for n in nodes), scope
    assert not any(n.startswith(("/backbone/", "/head/")) for n in tail)
    assert (postprocess == "none") != any("TopK" in n for n in tail)
    extra = set(with_predictors) - set(tail)
    assert extra and all("cls_logits" in n or "bbox_reg" in n for n in extra)


def test_build_cli_int8_without_calib_is_a_message(capsys):
    assert main(["build", "--int8", "--weights", "torchvision:retinanet_resnet9000", "-o", "x.onnx"]) == 2


def test_build_cli_on_empty_folder(tmp_path, capsys):
    from retina_edge.model.checkpoints import save_checkpoint

    weights = tmp_path / "w.pth"
    save_checkpoint(weights, build_model("resnet18_fpn", num_classes=2, backbone_width=16, fpn_channels=32, head_convs=1))
    (tmp_path / "empty").mkdir()
    code = main(["build", "--int8", "--weights", str(weights), "--imgsz", "128", "--calib", str(tmp_path / "empty"),
                 "-o", str(tmp_path / "out.onnx")])
    assert code == 2 and "holds no images" in capsys.readouterr().err
    assert not (tmp_path / "out.onnx").exists()


def test_calibration_runs_one_image_at_a_time(model, tmp_path, monkeypatch):
    """A run per calibration batch held every image's activations: 9.4 GB peak for ResNet-50 at
    512x512 with batches of 8 (ORT's calibrator keeps all outputs of a call until it returns)."""
    from retina_edge.calib import activations
    from retina_edge.calib.statistics import compute_stats
    from retina_edge.export.onnx_export import ExportOptions, export_onnx

    path = export_onnx(model, tmp_path / "m.onnx", ExportOptions(preprocess=PreprocessConfig(64, 64), batch=(1, 4, 8)))
    real_run, sizes = activations.ActivationProbe.run, []
    monkeypatch.setattr(activations.ActivationProbe, "run", lambda self, batch: sizes.append(len(batch)) or real_run(self, batch))
    batches = [np.random.default_rng(i).random((8, 3, 64, 64), np.float32) for i in range(2)]
    stats = compute_stats(path, iter(batches), method="entropy")
    assert stats.num_images == 16 and sizes == [1] * 16


def initializer_bytes(path) -> tuple[int, int]:  # noqa: ANN001
    """(total initializer bytes, how many initializers repeat another's bytes) of an ONNX file."""
    import hashlib

    graph = onnx.load(str(path)).graph
    seen, repeats, total = set(), 0, 0
    for init in graph.initializer:
        data = onnx.numpy_helper.to_array(init).tobytes()
        total += len(data)
        key = (init.data_type, tuple(init.dims), hashlib.sha256(data).digest())
        repeats += key in seen
        seen.add(key)
    return total, repeats


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_precision_graphs_keep_one_copy_per_weight(model, calib_dir, tmp_path, precision):
    """The head's weights serve five pyramid levels; Q/DQ insertion wrote a copy per level (the
    TensorRT-placement INT8 graph of ResNet-50 was 261 MB against 154 MB in FP32)."""
    export = ExportOptions(preprocess=PREPROCESS, batch=(1, 1, 1))
    calibration = CalibrationOptions(source=str(calib_dir), count=8, min_images=4, cache_dir=tmp_path / "cache")
    build_precision_graph(model, tmp_path / "fp32.onnx", export=export, build=BuildOptions(precision="fp32"))
    build_precision_graph(model, tmp_path / "q.onnx", export=export, build=BuildOptions(precision=precision, target="tensorrt", calibration=calibration if precision == "int8" else None))
    fp32_bytes, _ = initializer_bytes(tmp_path / "fp32.onnx")
    quantized_bytes, repeats = initializer_bytes(tmp_path / "q.onnx")
    assert repeats == 0 and quantized_bytes <= 1.1 * fp32_bytes


def test_sharing_initializers_keeps_outputs_and_overridable_ones():
    from onnx import TensorProto, helper

    from retina_edge.calib.shared_weights import share_identical_initializers

    weight = onnx.numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(2, 2), "w1")
    copy = onnx.numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(2, 2), "w2")
    default = onnx.numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(2, 2), "bias")  # also an input
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["a"]), helper.make_node("MatMul", ["a", "w2"], ["b"]),
         helper.make_node("Add", ["b", "bias"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2]), helper.make_tensor_value_info("bias", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])], [weight, copy, default])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = np.ones((2, 2), np.float32)
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert share_identical_initializers(model) == 1
    assert sorted(init.name for init in model.graph.initializer) == ["bias", "w1"]
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(before, after)
