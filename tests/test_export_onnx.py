"""ONNX export: contract, metadata, parity with PyTorch under ONNX Runtime, batch, and failure modes."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from retina_edge.model.retinanet import build_model
from retina_edge.contract import TAILS
from retina_edge.errors import RetinaEdgeError
from retina_edge.export.onnx_export import ExportOptions, export_onnx
from retina_edge.runtime.core.model_file import onnx_metadata_props, read_deployment
from retina_edge.metrics.matching import match_detections
from retina_edge.preprocess import PreprocessConfig, preprocess_batch
from retina_edge.model.reference import reference_on_inputs
from retina_edge.runtime.core.postprocess import select_detections
from rx1 import rx1_state_dict

TINY = dict(backbone_width=16, fpn_channels=32, head_convs=1, score_thresh=0.2)


def session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = build_model("resnet18_fpn", num_classes=3, class_names=("a", "b", "c"), **TINY).eval()
    with torch.no_grad():  # make a few anchors confident so NMS has real work
        model.head.classification_head.cls_logits.bias.add_(3.5)
    return model


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=shape, dtype=np.uint8) for shape in [(120, 200, 3), (300, 100, 3), (160, 160, 3), (77, 91, 3)]]


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    preprocess = PreprocessConfig(128, 160)
    return {mode: export_onnx(tiny_model, out / f"{mode}.onnx", ExportOptions(preprocess=preprocess, tail=mode, batch=(1, 2, 4)))
            for mode in TAILS.names()}


def test_contract_names_static_shapes_and_metadata(exported, tiny_model):
    for mode, path in exported.items():
        sess = session(path)
        assert [i.name for i in sess.get_inputs()] == ["images"]
        # names and types as the tail table declares them (Triton's configs and DeepStream read the table)
        assert tuple((o.name, o.type) for o in sess.get_outputs()) == tuple(
            (name, f"tensor({'float' if dtype == 'float32' else dtype})") for name, dtype in TAILS.get(mode).outputs)
        for output in sess.get_outputs():
            assert output.shape[0] == "batch" and all(isinstance(d, int) for d in output.shape[1:])
        metadata = read_deployment(path)
        assert metadata.model == tiny_model.config and metadata.tail.mode == mode and metadata.batch == (1, 2, 4)
        assert (metadata.preprocess.height, metadata.preprocess.width) == (128, 160)
    props = onnx_metadata_props(exported["decode"])
    assert props["names"] == '{"0": "a", "1": "b", "2": "c"}' and props["imgsz"] == "[128, 160]"
    assert not any(key.startswith("onnxsim.") for key in props)


def test_raw_outputs_match_pytorch(exported, tiny_model, images):
    batch, _ = preprocess_batch(images, PreprocessConfig(128, 160))
    logits, deltas = session(exported["none"]).run(None, {"images": batch})
    with torch.no_grad():
        ref, _ = tiny_model.head_outputs(torch.from_numpy(batch))
    np.testing.assert_allclose(logits, ref["cls_logits"].numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(deltas, ref["bbox_regression"].numpy(), atol=1e-4, rtol=0)


def _detections_match(tiny_model, batch, per_image):
    ref = reference_on_inputs(tiny_model, torch.from_numpy(batch))
    total = matched = 0
    for r, (boxes, scores, labels) in zip(ref, per_image):
        result = match_detections((r["boxes"].numpy(), r["scores"].numpy(), r["labels"].numpy()), (boxes, scores, labels))
        total += result.num_reference
        matched += result.matched
    assert total > 20, "the test model must produce detections"
    return matched / total


def test_decode_graph_then_host_nms_matches_reference(exported, tiny_model, images):
    config = tiny_model.config.postprocess
    batch, _ = preprocess_batch(images, PreprocessConfig(128, 160))
    boxes, scores, labels = session(exported["decode"]).run(None, {"images": batch})
    per_image = [select_detections(b, s, l, config) for b, s, l in zip(boxes, scores, labels)]
    assert _detections_match(tiny_model, batch, per_image) >= 0.995


def test_nms_graph_matches_reference(exported, tiny_model, images):
    batch, _ = preprocess_batch(images, PreprocessConfig(128, 160))
    num, boxes, scores, labels = session(exported["nms"]).run(None, {"images": batch})
    per_image = [(b[:n[0]], s[:n[0]], l[:n[0]]) for n, b, s, l in zip(num, boxes, scores, labels)]
    assert np.all(scores[0, num[0, 0]:] == 0)
    assert _detections_match(tiny_model, batch, per_image) >= 0.995


def test_batch_1_and_4_agree(exported, images):
    batch, _ = preprocess_batch(images, PreprocessConfig(128, 160))
    sess = session(exported["decode"])
    together = sess.run(None, {"images": batch})
    for index in range(len(images)):
        alone = sess.run(None, {"images": batch[index : index + 1]})
        np.testing.assert_allclose(alone[1][0], together[1][index], atol=1e-5)
        np.testing.assert_allclose(alone[0][0], together[0][index], atol=1e-3)


def test_interrupted_export_keeps_the_good_file(tiny_model, exported, tmp_path, monkeypatch):
    target = tmp_path / "model.onnx"
    target.write_bytes(exported["decode"].read_bytes())
    good = target.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.onnx, "export", crash)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(tiny_model, target, ExportOptions(preprocess=PreprocessConfig(128, 160)))
    assert target.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_bad_options_are_clear_errors():
    with pytest.raises(RetinaEdgeError, match="MIN <= OPT <= MAX"):
        ExportOptions(preprocess=PreprocessConfig(64, 64), batch=(4, 2, 1))
    with pytest.raises(RetinaEdgeError, match="opset"):
        ExportOptions(preprocess=PreprocessConfig(64, 64), opset=11)


@pytest.mark.slow
def test_resnet50_torchvision_layout_parity(tmp_path):
    """The rx1 ResNet-50 (torchvision v2 layout): raw outputs and detections through ORT."""
    model = build_model("resnet50_fpn_v2", num_classes=91, score_thresh=0.3).eval()
    model.load_state_dict(rx1_state_dict("v2"), strict=True)
    preprocess = PreprocessConfig(320, 320)
    raw = export_onnx(model, tmp_path / "raw.onnx", ExportOptions(preprocess=preprocess, tail="none", batch=(1, 1, 1)))
    dec = export_onnx(model, tmp_path / "dec.onnx", ExportOptions(preprocess=preprocess, batch=(1, 1, 1)))
    image = np.random.default_rng(5).integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    batch, _ = preprocess_batch([image], preprocess)
    logits, deltas = session(raw).run(None, {"images": batch})
    with torch.no_grad():
        ref, _ = model.head_outputs(torch.from_numpy(batch))
    np.testing.assert_allclose(logits, ref["cls_logits"].numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(deltas, ref["bbox_regression"].numpy(), atol=1e-4, rtol=0)
    boxes, scores, labels = session(dec).run(None, {"images": batch})
    detections = select_detections(boxes[0], scores[0], labels[0], model.config.postprocess)
    assert _detections_match(model, batch, [detections]) >= 0.995
