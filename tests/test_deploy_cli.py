"""Deployment commands end to end on generated data: build, detect, eval of a deployed model."""

from __future__ import annotations

import json

import pytest
import torch

from retina_edge.model.retinanet import build_model
from retina_edge.model.checkpoints import save_checkpoint
from retina_edge.cli.main import main
from retina_edge.data.synth import SynthConfig, write_dataset


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    write_dataset(root / "data", SynthConfig(num_images=10, seed=4))
    torch.manual_seed(0)
    model = build_model("resnet18_fpn", num_classes=6, class_names=("ellipse", "rectangle", "triangle", "diamond", "cross", "star"),
                        category_ids=(1, 2, 3, 4, 5, 6), backbone_width=16, fpn_channels=32, head_convs=1,
                        min_size=128, max_size=128, score_thresh=0.2).eval()
    with torch.no_grad():
        model.head.classification_head.cls_logits.bias.add_(3.5)
    save_checkpoint(root / "w.pth", model)
    return root


def test_build_auto_without_tensorrt_says_what_it_built(setup, capsys):
    out = setup / "m.onnx"
    assert main(["build", "--weights", str(setup / "w.pth"), "--imgsz", "128", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.is_file() and "TensorRT is not installed here" in text


def test_build_backend_tensorrt_without_tensorrt_is_a_message(setup, capsys):
    pytest.importorskip("numpy")
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    assert main(["build", "--backend", "tensorrt", "--weights", str(setup / "w.pth"), "--imgsz", "128",
                 "-o", str(setup / "x.engine")]) == 2
    err = capsys.readouterr().err
    assert "needs the 'tensorrt' package" in err and "pip install tensorrt" in err and "Traceback" not in err


def test_detect_writes_images_and_json(setup, capsys):
    model = setup / "m.onnx"
    if not model.exists():
        main(["build", "--weights", str(setup / "w.pth"), "--imgsz", "128", "-o", str(model)])
    (setup / "data" / "val" / "broken.jpg").write_bytes(b"nope")
    assert main(["detect", "--model", str(model), "--source", str(setup / "data" / "val"),
                 "--save-dir", str(setup / "vis"), "--save-json", str(setup / "dets.json")]) == 0
    records = json.loads((setup / "dets.json").read_text())
    assert records and {"file_name", "category_id", "bbox", "score", "name"} <= set(records[0])
    assert records[0]["category_id"] in range(1, 7)
    assert len(list((setup / "vis").glob("*.jpg"))) == 2
    assert "1 unreadable skipped" in capsys.readouterr().out
    (setup / "data" / "val" / "broken.jpg").unlink()


def test_eval_scores_deployed_model_like_the_checkpoint(setup):
    import dataclasses

    from retina_edge.presets import PRESET_SYNTH_DATA

    write_dataset(setup / "preset-data", dataclasses.replace(PRESET_SYNTH_DATA, num_images=60, seed=8, val_fraction=0.5))
    model = setup / "preset.onnx"
    assert main(["build", "--weights", "preset:synth", "-o", str(model)]) == 0
    for weights, name in (("preset:synth", "ref"), (model, "onnx")):
        assert main(["eval", "--weights", str(weights), "--data", str(setup / "preset-data"),
                     "--metrics-json", str(setup / f"{name}.json")]) == 0
    ref = json.loads((setup / "ref.json").read_text())["summary"]
    onnx = json.loads((setup / "onnx.json").read_text())["summary"]
    # The checkpoint runs torchvision's resize (192 long side), the ONNX the 192x192 letterbox: the
    # same geometry, so a trained model scores the same through both paths.
    assert ref["AP"] > 0.3 and abs(ref["AP"] - onnx["AP"]) < 0.03
