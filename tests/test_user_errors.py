"""User mistakes at the CLI: each gets one line naming the problem, exit 2, no traceback, and
leaves every file as it was (nothing new written, nothing replaced)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from retina_edge.archs import build_model
from retina_edge.checkpoints import save_checkpoint
from retina_edge.cli.main import main
from retina_edge.export.onnx_export import ExportOptions, export_onnx
from retina_edge.imageio import write_image_rgb
from retina_edge.preprocess import PreprocessConfig
from retina_edge.synth import SynthConfig, write_dataset


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mistakes")
    write_dataset(root / "data", SynthConfig(num_images=6, seed=4, min_side=96, max_side=128))
    torch.manual_seed(0)
    model = build_model("resnet18_fpn", num_classes=6, backbone_width=16, fpn_channels=32, head_convs=1,
                        min_size=128, max_size=128).eval()
    save_checkpoint(root / "w.pth", model)
    newer = torch.load(root / "w.pth", weights_only=True)
    newer["config"]["attention"] = True
    torch.save(newer, root / "newer.pth")
    export_onnx(model, root / "m.onnx", ExportOptions(preprocess=PreprocessConfig(128, 128)))
    import onnx

    graph = onnx.load(str(root / "m.onnx"))
    next(p for p in graph.metadata_props if p.key == "retina_edge.format_version").value = "9"
    onnx.save(graph, str(root / "future.onnx"))
    rng = np.random.default_rng(0)
    for index in range(3):
        write_image_rgb(root / "three" / f"{index}.jpg", rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))
    (root / "three" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "m.trt").write_bytes(b"an unrelated file the user keeps")
    return root


CASES = {
    "model-options not JSON": (["train", "--data", "{root}/data", "--out", "{root}/runs", "--model-options", "{{bad"],
                               "--model-options is not valid JSON"),
    "model-options not an object": (["train", "--data", "{root}/data", "--out", "{root}/runs", "--model-options", "[1]"],
                                    "must be a JSON object"),
    "unknown model option": (["train", "--data", "{root}/data", "--out", "{root}/runs", "--iterations", "1",
                              "--model-options", '{{"attention": 1}}'], "bad model option"),
    "unknown arch": (["train", "--data", "{root}/data", "--out", "{root}/runs", "--arch", "resnet7_fpn"], "unknown arch"),
    "arch contradicts checkpoint": (["export", "--weights", "{root}/w.pth", "--arch", "resnet50_fpn", "-o", "{root}/x.onnx"],
                                    "--arch resnet50_fpn contradicts"),
    "classes contradict checkpoint": (["export", "--weights", "{root}/w.pth", "--num-classes", "3", "-o", "{root}/x.onnx"],
                                      "--num-classes 3 contradicts"),
    "checkpoint from a newer version": (["export", "--weights", "{root}/newer.pth", "-o", "{root}/x.onnx"],
                                        "written by a newer retina-edge"),
    "onnx from a newer version": (["detect", "--model", "{root}/future.onnx", "--source", "{root}/three"],
                                  "written by a newer retina-edge"),
    "conf above 1": (["detect", "--model", "{root}/m.onnx", "--source", "{root}/three", "--conf", "1.5"], "between 0 and 1"),
    "conf NaN": (["detect", "--model", "{root}/m.onnx", "--source", "{root}/three", "--score-thresh", "nan"],
                 "between 0 and 1"),
    "too few calibration images": (["build", "--int8", "--target", "cpu", "--weights", "{root}/w.pth", "--calib",
                                    "{root}/three", "--calib-count", "8", "-o", "{root}/q.onnx"], "only 3 usable"),
    "opset out of range": (["export", "--weights", "{root}/w.pth", "--opset", "99", "-o", "{root}/x.onnx"],
                           "opset 99 is not supported"),
    **{f"-o {suffix} without TensorRT": (["build", "--weights", "{root}/w.pth", "-o", f"{{root}}/m{suffix}"],
                                         "needs the 'tensorrt' package") for suffix in (".engine", ".plan", ".trt")},
}


def snapshot(root):
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_mistake_is_one_line_exit_2_and_writes_nothing(root, name, capsys):
    import importlib.util

    argv, expected = CASES[name]
    if "TensorRT" in name and importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    before = snapshot(root)
    assert main([arg.format(root=root) for arg in argv]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and expected in errors[0], err
    assert "Traceback" not in err
    assert snapshot(root) == before


def test_explicit_small_calib_count_is_honoured_with_a_warning(root, tmp_path, capsys):
    """8 usable images and --calib-count 8: the user's decision; it calibrates (and warns)."""
    for index in range(8):
        write_image_rgb(tmp_path / "eight" / f"{index}.jpg", np.full((64, 80, 3), 20 * index, dtype=np.uint8))
    assert main(["build", "--int8", "--target", "cpu", "--weights", str(root / "w.pth"), "--calib", str(tmp_path / "eight"),
                 "--calib-count", "8", "--imgsz", "128", "-o", str(tmp_path / "q.onnx")]) == 0
    captured = capsys.readouterr()
    assert "calibrating on 8 images; NVIDIA suggests about 500" in captured.err
    assert "8 images used" in captured.out and (tmp_path / "q.onnx").is_file()


def test_arch_matching_the_checkpoint_is_fine(root, tmp_path):
    assert main(["export", "--weights", str(root / "w.pth"), "--arch", "resnet18_fpn", "--num-classes", "6",
                 "-o", str(tmp_path / "x.onnx")]) == 0


def test_static_batch_graph_detects_any_count(root, tmp_path, capsys):
    """export --batch 2 2 2, then detect on 3 images (2 + a padded 1)."""
    assert main(["export", "--weights", str(root / "w.pth"), "--batch", "2", "2", "2", "-o", str(tmp_path / "s.onnx")]) == 0
    assert main(["detect", "--model", str(tmp_path / "s.onnx"), "--source", str(root / "three"),
                 "--save-json", str(tmp_path / "d.json")]) == 0
    assert "3 images" in capsys.readouterr().out
    assert isinstance(json.loads((tmp_path / "d.json").read_text()), list)
