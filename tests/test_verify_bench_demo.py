"""verify / bench / demo on the preset model: FP32 passes, a corrupted INT8 fails and says why."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from retina_edge.cli.main import main
from retina_edge.presets import PRESET_SYNTH_DATA
from retina_edge.data.synth import write_dataset


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    import dataclasses

    root = tmp_path_factory.mktemp("verify")
    write_dataset(root / "data", dataclasses.replace(PRESET_SYNTH_DATA, num_images=60, seed=5, val_fraction=0.5))
    assert main(["build", "--weights", "preset:synth", "-o", str(root / "fp32.onnx")]) == 0
    assert main(["build", "--int8", "--target", "cpu", "--weights", "preset:synth", "--calib", str(root / "data" / "train"),
                 "--calib-count", "30", "-o", str(root / "int8.onnx")]) == 0
    return root


def verify(workspace, model, *extra):
    data = workspace / "data"
    return main(["verify", "--model", str(model), "--weights", "preset:synth", "--images", str(data / "val"),
                 "--ann", str(data / "annotations" / "instances_val.json"), "--count", "30", *extra])


def test_fp32_verifies_near_exactly(workspace, capsys):
    report_json = workspace / "fp32.json"
    junit = workspace / "fp32.xml"
    assert verify(workspace, workspace / "fp32.onnx", "--json", str(report_json), "--report", str(workspace / "rep"),
                  "--junit", str(junit)) == 0
    report = json.loads(report_json.read_text())
    for name in ("delta", "reference", "deployed"):
        for metric in ("AP", "AP50", "AP75"):
            low, high = report["coco"][f"{name}_points_ci95"][metric]
            assert low <= high
    low, high = report["coco"]["delta_points_ci95"]["AP"]
    assert -0.05 < low <= high < 0.05  # the same detections on every resample
    low, high = report["coco"]["reference_points_ci95"]["AP"]
    assert low <= 100 * report["coco"]["reference"]["AP"] <= high and low < high
    assert "<testcase" in junit.read_text() and "<failure" not in junit.read_text()
    assert (workspace / "rep" / "ap_intervals.png").is_file()
    assert report["passed"] and report["ap_vs_reference"] > 0.99
    assert report["precision_recall"]["recall@0.9"] > 0.99
    assert all(t["max_abs"] < 1e-3 and t["paired"] > 0.99 for t in report["tensors"])
    assert abs(report["coco"]["delta_points"]["AP"]) < 0.05
    assert (workspace / "rep" / "report.md").is_file() and (workspace / "rep" / "score_scatter.png").is_file()
    assert "PASS" in capsys.readouterr().out


def test_int8_verifies_within_its_thresholds(workspace):
    report_json = workspace / "int8.json"
    verify(workspace, workspace / "int8.onnx", "--json", str(report_json))
    report = json.loads(report_json.read_text())
    assert (report["precision"], report["target"]) == ("int8", "cpu") and report["ap_vs_reference"] > 0.7


def test_corrupted_qdq_scale_fails_and_says_why(workspace, capsys):
    graph = onnx.load(str(workspace / "int8.onnx"))
    quantize = next(n for n in graph.graph.node if n.op_type == "QuantizeLinear" and "/backbone/body/layer2" in n.name)
    scale_name = quantize.input[1]
    for initializer in graph.graph.initializer:
        if initializer.name == scale_name:
            value = numpy_helper.to_array(initializer) * 40.0
            initializer.CopyFrom(numpy_helper.from_array(value.astype(np.float32), scale_name))
    broken = workspace / "int8-broken.onnx"
    onnx.save(graph, str(broken))
    assert verify(workspace, broken) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and ("AP of deployed vs reference" in out or "COCO AP dropped" in out)


def test_bench_runs_models_side_by_side(workspace, capsys):
    out = workspace / "bench.json"
    # --backend fixed: auto measures ONNX Runtime against OpenVINO and may pick either (tested in
    # test_backend_choice.py); the names below are ONNX Runtime's.
    assert main(["bench", "--model", str(workspace / "fp32.onnx"), "--model", str(workspace / "int8.onnx"),
                 "--backend", "onnxruntime", "--weights", "preset:synth", "--iters", "3", "--warmup", "1", "--batch",
                 "1", "2", "--json", str(out), "--plot", str(workspace / "bench.png")]) == 0
    rows = json.loads(out.read_text())
    assert [r["name"] for r in rows[:3]] == ["pytorch fp32 eager", "fp32 [onnxruntime]", "int8 [onnxruntime]"]
    assert rows[0]["ratio_to_first"] == 1.0 and {r["batch"] for r in rows} == {1, 2}
    assert all(r["p50_ms"] > 0 and r["inference_ms"] > 0 for r in rows)
    assert all(isinstance(r["rss_mb"], float) for r in rows)  # each model's load was measured


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    from retina_edge.quality.demo import run_demo

    summary = run_demo(tmp_path / "demo", val_images=40, video_frames=20)
    text = summary.read_text()
    for name in ("synth-fp32", "synth-fp16", "synth-int8-cpu", "synth-int8-tensorrt", "synth-int8-cpu-search"):
        assert name in text
    assert "INT8 accuracy search:" in text and (tmp_path / "demo" / "verify" / "synth-int8-cpu-search" / "search.png").is_file()
    assert (tmp_path / "demo" / "video_detections.mp4").stat().st_size > 10_000
    assert (tmp_path / "demo" / "bench.png").is_file()
    rows = json.loads((tmp_path / "demo" / "bench.json").read_text())
    # the reference was loaded before the bench (no figure); each runtime model's load is measured
    assert rows[0]["rss_mb"] is None and all(isinstance(r["rss_mb"], float) for r in rows[1:])


def test_bench_table_shows_whole_names():
    from retina_edge.quality.bench import format_table

    row = {"batch": 1, "p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0, "preprocess_ms": 0.1, "inference_ms": 0.8,
           "postprocess_ms": 0.1, "images_per_s": 1000.0, "ratio_to_first": 1.0, "rss_mb": None}
    names = ["default Detector on int8 -> openvino", "short"]
    lines = format_table([{**row, "name": name} for name in names]).splitlines()
    assert lines[1].startswith(names[0] + " ") and lines[2].startswith("short ")
    assert len({len(line) for line in lines[1:]}) == 1  # the columns still line up


def test_bench_does_not_charge_an_entry_for_the_previous_ones_spinning_threads():
    """The previous entry's runtime holds the cores 60 ms after its run returns (ONNX Runtime's
    spinning workers); the entry after it must still measure its own 15 ms, not 75."""
    import time

    from retina_edge.quality.bench import BenchEntry, run_bench
    from spinning import Cores

    cores = Cores()

    def entry(name, seconds, spin_after):  # noqa: ANN001, ANN202
        def run(images):  # noqa: ANN001, ANN202
            start = time.perf_counter()
            cores.work(seconds, spin_after=spin_after)
            return {"preprocess": 0.0, "inference": time.perf_counter() - start, "postprocess": 0.0}

        return BenchEntry(name, run)

    rows = run_bench([entry("spins", 0.03, 0.06), entry("after it", 0.015, 0.0)], [np.zeros((8, 8, 3), np.uint8)],
                     batch=1, iterations=3, warmup=1)
    assert rows[1]["ratio_to_first"] < 0.8, rows
