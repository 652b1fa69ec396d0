"""INT8 under an AP budget: the keep-high rewiring (none kept = plain INT8, all kept = FP32), the
count search, and `build --max-ap-drop` end to end on the preset."""

from __future__ import annotations

import json
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from retina_edge.calib.build import BuildOptions, CalibrationOptions, build_precision_graph
from retina_edge.calib.search import (
    SearchOptions,
    SearchResult,
    Step,
    _resolvable,
    _search_counts,
    keep_high_precision,
    quantized_layers,
)
from retina_edge.cli.main import main
from retina_edge.export.onnx_export import ExportOptions
from retina_edge.imageio import write_image_rgb
from retina_edge.preprocess import PreprocessConfig, preprocess_batch
from retina_edge.data.synth import SynthConfig, render_image
from tiny import tiny_model

PREPROCESS = PreprocessConfig(128, 160)


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """FP32 and both INT8 placements of a tiny model, and a batch to run them on."""
    root = tmp_path_factory.mktemp("search")
    images = [render_image(SynthConfig(seed=2), i)[0] for i in range(16)]
    for index, image in enumerate(images):
        write_image_rgb(root / "calib" / f"{index}.jpg", image)
    model = tiny_model()
    export = ExportOptions(preprocess=PREPROCESS, tail="none", batch=(1, 1, 4))
    calibration = CalibrationOptions(source=str(root / "calib"), count=16, min_images=8, cache_dir=root / "cache")
    paths = {}
    for precision, target in (("fp32", "cpu"), ("int8", "cpu"), ("int8", "tensorrt")):
        paths[precision, target] = build_precision_graph(model, root / f"{precision}-{target}.onnx", export=export, build=BuildOptions(precision=precision, target=target, calibration=calibration)).model_path
    return paths, preprocess_batch(images[:2], PREPROCESS)[0]


def run(model, batch):  # noqa: ANN001
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [session.run(None, {"images": batch[i : i + 1]}) for i in range(len(batch))]


@pytest.mark.parametrize("target,high,tol", [("cpu", "fp32", 1e-5), ("tensorrt", "fp16", 2e-2)])
def test_keeping_none_is_plain_int8_and_all_is_fp32(graphs, target, high, tol):
    paths, batch = graphs
    qdq, fp32 = onnx.load(str(paths["int8", target])), onnx.load(str(paths["fp32", "cpu"]))
    layers = quantized_layers(qdq)
    assert sum(n.op_type == "Conv" for n in qdq.graph.node if n.name in set(layers)) > 20
    plain, none_kept = run(qdq, batch), run(keep_high_precision(qdq, fp32, [], high=high), batch)
    for got, want in zip(none_kept, plain):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    everything = keep_high_precision(qdq, fp32, layers, high=high)
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in everything.graph.node)
    assert any(n.op_type == "Cast" for n in everything.graph.node) == (high == "fp16")
    for got, want in zip(run(everything, batch), run(fp32, batch)):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, atol=tol, rtol=0)


def counts_search(curve, budget, total=64, time_limit=None):  # noqa: ANN001
    """Run the count search on an AP curve (a function of the count); returns (result, counts tried)."""
    tried, ranked = [], []
    result = _search_counts(lambda count: tried.append(count) or curve(count), total, 60.0,
                            SearchOptions(max_ap_drop=budget, val="v", time_limit=time_limit), time.perf_counter(),
                            rank=lambda: ranked.append(True))
    return result, tried, ranked


def test_search_finds_the_fewest_layers_and_stops_early():
    curve = lambda count: 59.0 + min(count, 20) * 0.05  # noqa: E731 - AP rises until 20 layers are kept
    (count, ap), tried, _ = counts_search(curve, budget=0.5)  # needs 59.5: 10 layers
    assert count == 10 and ap == pytest.approx(59.5)
    assert tried == [0, 1, 2, 4, 8, 16, 12, 10, 9]
    (count, _), tried, ranked = counts_search(curve, budget=1.5)  # plain INT8 meets it: nothing ranked
    assert count == 0 and tried == [0] and not ranked


def test_unmet_budget_returns_the_best_found():
    (count, ap), tried, _ = counts_search(lambda count: 58.0 + (count == 8) * 0.5, budget=0.1, total=16)
    assert (count, ap) == (8, 58.5) and tried == [0, 1, 2, 4, 8, 16]
    (count, _), tried, ranked = counts_search(lambda count: 58.0, budget=0.1, time_limit=1e-9)
    assert count == 0 and tried == [0] and not ranked  # the time limit stops before ranking


@pytest.fixture(scope="module")
def preset_data(tmp_path_factory):
    from retina_edge.cli.main import main as cli

    root = tmp_path_factory.mktemp("preset-search")
    assert cli(["synth", "--out", str(root / "data"), "--images", "60", "--seed", "21", "--sides", "176", "224",
                "--max-object", "200", "--val-fraction", "0.5"]) == 0
    return root


def test_build_with_a_budget_writes_the_model_and_its_search(preset_data, capsys):
    root = preset_data
    out = root / "m.onnx"
    assert main(["build", "--int8", "--target", "cpu", "--weights", "preset:synth", "--calib", str(root / "data" / "train"),
                 "--calib-count", "30", "--max-ap-drop", "50", "--val", str(root / "data"), "-o", str(out)]) == 0
    record = json.loads((root / "m.search.json").read_text())
    assert {"max_ap_drop", "ap_reference", "ap_deployed", "layers_total", "layers_kept_high", "trajectory"} <= set(record)
    assert record["budget_met"] and record["layers_kept_high"] == [] and record["layers_total"] > 50
    low, high = record["ap_drop_ci95"]
    assert record["verdict"] == "met" and low <= record["ap_drop"] <= high <= 50 and record["val_images"] == 30
    assert "upper bound" in record["decision_rule"] and record["images_needed"] >= 1
    assert len(record["sensitivity"]) == record["layers_total"]  # every layer scored, even with none kept high
    assert (root / "m.sensitivity.png").is_file()
    assert record["ap_reference"] > 30 and 0 <= record["ap_reference"] - record["ap_deployed"] <= 50
    assert "search: 0 of" in capsys.readouterr().out
    assert main(["verify", "--model", str(out), "--weights", "preset:synth", "--images", str(root / "data" / "val"),
                 "--ann", str(root / "data" / "annotations" / "instances_val.json"), "--count", "10",
                 "--report", str(root / "report")]) in (0, 1)
    assert (root / "report" / "search.png").is_file() and (root / "report" / "sensitivity.png").is_file()
    assert "Per-layer sensitivity" in (root / "report" / "report.md").read_text()
    assert "INT8 accuracy search: 0 of" in (root / "report" / "report.md").read_text()
    assert "95% interval" in (root / "report" / "report.md").read_text()


def test_unmet_budget_writes_the_best_model_as_such_and_exits_1(preset_data, capsys):
    root = preset_data
    out = root / "tight.onnx"
    assert main(["build", "--int8", "--target", "cpu", "--weights", "preset:synth", "--calib", str(root / "data" / "train"),
                 "--calib-count", "30", "--max-ap-drop", "0", "--val", str(root / "data"), "--search-time-limit", "0.001",
                 "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no model met the budget of 0.0 AP points; the best found is written as" in err and "tight.best.onnx" in err
    assert (root / "tight.best.onnx").is_file() and not out.exists()
    record = json.loads((root / "tight.search.json").read_text())
    assert not record["budget_met"] and record["verdict"] == "unresolved" and record["images_needed"] is None
    assert "cannot resolve a budget of 0.0 AP points" in err


def step(drop: float, se: float) -> Step:
    return Step(ap=60 - drop, ap_ci95=[0, 0], drop=drop, drop_ci95=[drop - 1.96 * se, drop + 1.96 * se], drop_se=se)


def test_a_budget_the_val_set_cannot_resolve_is_reported_with_the_images_it_needs(caplog):
    """SE 0.3 points on 60 images: 0.05 points needs (1.96 * 0.3 / 0.05)^2 * 60 = 8,298 images."""
    result = SearchResult(0.05, 60.0, 0.0, 80, [], "fp32", False, val_images=60)
    assert not _resolvable(result, step(0.2, 0.3), SearchOptions(max_ap_drop=0.05, val="v"))
    assert result.verdict == "unresolved" and result.images_needed == 8298
    assert "60 validation images cannot resolve a budget of 0.05 AP points" in caplog.text
    resolvable = SearchResult(1.0, 60.0, 0.0, 80, [], "fp32", False, val_images=300)
    assert _resolvable(resolvable, step(1.4, 0.15), SearchOptions(max_ap_drop=1.0, val="v"))
    assert resolvable.verdict == "not met"  # no verdict yet: the search goes on
    # plain INT8 already shown within: resolved whatever the SE
    assert _resolvable(SearchResult(1.0, 60.0, 0.0, 80, [], "fp32", False, val_images=50), step(0.0, 0.5),
                       SearchOptions(max_ap_drop=1.0, val="v"))


def test_the_decision_rule_is_the_upper_bound():
    """Drop 0.6 with upper bound 1.2 does not meet a budget of 1.0; drop 0.6 with upper bound 0.9 does."""
    options = SearchOptions(max_ap_drop=1.0, val="v")
    assert not options.within_budget(60.0, step(0.6, 0.6 / 1.96).conservative_ap(60.0))
    assert options.within_budget(60.0, step(0.6, 0.3 / 1.96).conservative_ap(60.0))


def test_a_budget_is_never_met_on_too_few_images_for_a_bootstrap(caplog):
    """3 images on which INT8 and FP32 agree give a zero-width interval: "met" said nothing."""
    from retina_edge.metrics.bootstrap import MIN_IMAGES

    result = SearchResult(0.5, 60.0, 0.0, 80, [], "fp32", False, val_images=3)
    assert not _resolvable(result, step(0.0, 0.0), SearchOptions(max_ap_drop=0.5, val="v"))
    assert result.verdict == "unresolved" and result.images_needed == MIN_IMAGES == 20
    assert "3 validation images are too few for a bootstrap interval to be evidence (at least 20)" in caplog.text
    enough = SearchResult(0.5, 60.0, 0.0, 80, [], "fp32", False, val_images=MIN_IMAGES)
    assert _resolvable(enough, step(0.0, 0.0), SearchOptions(max_ap_drop=0.5, val="v"))
