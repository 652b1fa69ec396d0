"""The deployment contract at its seams: one typed object from export to runtime, read back from
.onnx and engines, format-1 files still loading; the score threshold on every graph tail; short
batches on static-batch graphs; engines by any of their suffixes; the Detector freeing its backend."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from retina_edge.contract import FORMAT_VERSION, KEY_FORMAT, DeploymentMetadata, GraphTail, is_engine_path
from retina_edge.errors import RetinaEdgeError
from retina_edge.export.onnx_export import ExportOptions, export_onnx
from retina_edge.preprocess import PreprocessConfig
from retina_edge.runtime import Detector
from retina_edge.runtime.tensorrt.engine_file import write_engine_file
from retina_edge.runtime.core.model_file import onnx_metadata_props, read_deployment
from retina_edge.runtime.video import Pipeline
from tiny import tiny_model

PREPROCESS = PreprocessConfig(128, 160)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def graphs(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("contract")
    files = {mode: export_onnx(model, out / f"{mode}.onnx", ExportOptions(preprocess=PREPROCESS, tail=mode, batch=(1, 2, 3)))
             for mode in ("none", "decode", "nms")}
    files["static"] = export_onnx(model, out / "static.onnx", ExportOptions(preprocess=PREPROCESS, batch=(2, 2, 2)))
    return files


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, size=s, dtype=np.uint8) for s in [(100, 200, 3), (240, 120, 3), (128, 160, 3)]]


def test_export_writes_the_whole_contract(model, graphs):
    metadata = read_deployment(graphs["nms"])
    assert metadata == ExportOptions(preprocess=PREPROCESS, tail="nms", batch=(1, 2, 3)).metadata_for(model.config)
    post = model.config.postprocess
    assert metadata.tail == GraphTail("nms", topk_candidates=post.topk_candidates, score_thresh=post.score_thresh,
                                      nms_thresh=post.nms_thresh, detections_per_img=post.detections_per_img)
    assert read_deployment(graphs["decode"]).tail == GraphTail("decode", topk_candidates=post.topk_candidates)
    assert (metadata.precision, metadata.target, metadata.batch) == ("fp32", "any", (1, 2, 3))


def test_metadata_reader_needs_no_onnx_and_agrees_with_it(graphs, tmp_path):
    import onnx

    for path in graphs.values():
        assert onnx_metadata_props(path) == {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    damaged = tmp_path / "cut.onnx"
    damaged.write_bytes(graphs["decode"].read_bytes()[:-100])
    with pytest.raises(RetinaEdgeError, match="truncated or damaged"):
        read_deployment(damaged)


def test_engines_carry_the_contract_under_every_suffix(model, tmp_path):
    metadata = ExportOptions(preprocess=PREPROCESS, tail="nms").metadata_for(model.config).override(precision="fp16")
    for suffix in (".engine", ".plan", ".trt", ".TRT"):
        assert is_engine_path(f"m{suffix}")
        path = write_engine_file(tmp_path / f"m{suffix}", b"plan", metadata=metadata, tensorrt_version="10.3.0",
                                 device={"name": "Orin"}, build={})
        assert read_deployment(path) == metadata
    assert not is_engine_path("m.onnx")


def format1_props(metadata: DeploymentMetadata) -> dict[str, str]:
    """What retina-edge wrote before the contract had a typed tail and separate target (format 1)."""
    import json

    props = metadata.to_props()
    for key in ("retina_edge.tail", "retina_edge.target"):
        del props[key]
    props.update({KEY_FORMAT: "1", "retina_edge.postprocess": metadata.tail.mode,
                  "retina_edge.precision": f"{metadata.precision}-{metadata.target}", "retina_edge.outputs":
                  json.dumps(list(metadata.output_names))})
    return props


def test_format1_files_keep_loading(model, graphs, images, tmp_path):
    import onnx

    current = read_deployment(graphs["nms"]).override(precision="int8", target="cpu")
    assert DeploymentMetadata.from_props(format1_props(current)) == current
    graph = onnx.load(str(graphs["nms"]))
    old = format1_props(read_deployment(graphs["nms"]))
    old["retina_edge.precision"] = "fp32"  # format 1 wrote plain precisions this way
    del graph.metadata_props[:]
    for key, value in old.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(tmp_path / "old.onnx"))
    assert read_deployment(tmp_path / "old.onnx") == read_deployment(graphs["nms"])
    for got, want in zip(Detector(tmp_path / "old.onnx").detect(images), Detector(graphs["nms"]).detect(images)):
        np.testing.assert_array_equal(got.boxes, want.boxes)


def test_files_from_a_newer_retina_edge_say_so(model):
    props = ExportOptions(preprocess=PREPROCESS).metadata_for(model.config).to_props()
    with pytest.raises(RetinaEdgeError, match="written by a newer retina-edge"):
        DeploymentMetadata.from_props({**props, KEY_FORMAT: str(FORMAT_VERSION + 1)})
    newer_model = props["retina_edge.model"].replace('"arch"', '"attention": true, "arch"')
    with pytest.raises(RetinaEdgeError, match=r"does not know \(attention\).*written by a newer retina-edge"):
        DeploymentMetadata.from_props({**props, "retina_edge.model": newer_model})
    with pytest.raises(RetinaEdgeError, match="damaged retina-edge metadata"):
        DeploymentMetadata.from_props({**props, "retina_edge.batch": "1,x"})


@pytest.mark.parametrize("mode", ["none", "decode", "nms"])
def test_score_thresh_filters_on_every_tail(graphs, images, mode):
    everything = Detector(graphs[mode]).detect(images)
    strict = Detector(graphs[mode], score_thresh=0.3).detect(images)
    assert sum(len(d) for d in strict) > 0 and sum(len(d) for d in strict) < sum(len(d) for d in everything)
    for loose, tight in zip(everything, strict):
        assert (tight.scores > 0.3).all()
        kept = loose.filter(score_thresh=0.3)
        np.testing.assert_array_equal(tight.boxes, kept.boxes)


def test_threshold_below_the_baked_one_says_so(graphs, images, caplog):
    with caplog.at_level(logging.WARNING, logger="retina_edge"):
        detector = Detector(graphs["nms"], score_thresh=0.05)
    assert "score threshold of 0.2 built in" in caplog.text
    assert detector.metadata.score_thresh == 0.2
    for got, want in zip(detector.detect(images), Detector(graphs["nms"]).detect(images)):
        np.testing.assert_array_equal(got.scores, want.scores)


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan")])
def test_score_thresh_outside_0_1_is_refused(graphs, bad):
    with pytest.raises(RetinaEdgeError, match="between 0 and 1"):
        Detector(graphs["decode"], score_thresh=bad)


def test_static_batch_graph_takes_short_batches(graphs, images):
    static = Detector(graphs["static"])
    assert static.metadata.batch == (2, 2, 2)
    dynamic = Detector(graphs["decode"])
    assert len(static.detect(images[0])) == 1
    for got, want in zip(static.detect(images), dynamic.detect(images)):  # 3 images: 2 + (1 padded to 2)
        np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)


def test_infer_pads_to_a_profile_minimum(model, graphs, images):
    """An engine profile whose minimum is above 1 gets the same padding (checked on ONNX Runtime by
    declaring the dynamic graph's range as 2..3)."""
    detector = Detector(graphs["decode"])
    calls = []
    run = detector.backend.run
    detector.backend.run = lambda batch: calls.append(len(batch)) or run(batch)
    detector.metadata = detector.metadata.override(batch=(2, 2, 3))
    batch, _ = detector.preprocess(images[:1] * 4)
    outputs = detector.infer(batch)
    assert calls == [3, 2] and outputs["scores"].shape[0] == 4
    np.testing.assert_allclose(outputs["scores"][3], outputs["scores"][0], atol=1e-6)


def test_detector_and_pipeline_free_what_they_opened(graphs, images):
    with Detector(graphs["decode"]) as detector:
        (expected,) = detector.detect(images[0])
    assert detector.backend is None
    detector.close()  # idempotent
    with Pipeline(str(graphs["decode"])) as pipeline:
        result = pipeline.submit(images[0]).result(timeout=30)
    assert result.index == 0 and len(result.detections) == len(expected) > 0
    np.testing.assert_allclose(result.detections.boxes, expected.boxes, atol=1e-3)
    np.testing.assert_allclose(result.detections.scores, expected.scores, atol=1e-5)
    np.testing.assert_array_equal(result.detections.labels, expected.labels)
    assert pipeline.detector.backend is None
    mine = Detector(graphs["decode"])
    with Pipeline(mine) as pipeline:
        pipeline.submit(images[0]).result(timeout=30)
    assert mine.backend is not None  # the caller's detector stays the caller's


def test_override_is_the_one_way_to_change_metadata(model):
    metadata = ExportOptions(preprocess=PREPROCESS).metadata_for(model.config)
    changed = metadata.override(score_thresh=0.5, batch=(1, 4, 8), precision="fp16")
    assert changed.model.postprocess.score_thresh == 0.5 and changed.batch == (1, 4, 8) and changed.precision == "fp16"
    assert dataclasses.replace(changed, model=metadata.model, batch=metadata.batch, precision="fp32") == metadata
    with pytest.raises(RetinaEdgeError, match=r"a batch range \(MIN, OPT, MAX\) needs"):
        metadata.override(batch=(2, 1, 1))
