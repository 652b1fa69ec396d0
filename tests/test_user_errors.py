"""User mistakes at the CLI: each gets one line naming the problem, exit 2, no traceback, and
leaves every file as it was (nothing new written, nothing replaced)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from retina_edge.model.retinanet import build_model
from retina_edge.model.checkpoints import save_checkpoint
from retina_edge.cli.main import main
from retina_edge.export.onnx_export import ExportOptions, export_onnx
from retina_edge.imageio import write_image_rgb
from retina_edge.preprocess import PreprocessConfig
from retina_edge.data.synth import SynthConfig, write_dataset
from retina_edge.data.synth_video import SyntheticVideo, write_video


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
    three = build_model("resnet18_fpn", num_classes=3, backbone_width=16, fpn_channels=32, head_convs=1,
                        min_size=128, max_size=128).eval()
    save_checkpoint(root / "three-classes.pth", three)
    other = build_model("resnet34_fpn", num_classes=6, backbone_width=16, fpn_channels=32, head_convs=1,
                        min_size=128, max_size=128).eval()
    save_checkpoint(root / "other-arch.pth", other)
    write_dataset(root / "other", SynthConfig(num_images=6, seed=9, min_side=140, max_side=160))  # same file names
    graph = onnx.load(str(root / "m.onnx"))
    next(p for p in graph.metadata_props if p.key == "retina_edge.tail").value = "{not json"
    onnx.save(graph, str(root / "damaged.onnx"))
    del graph.metadata_props[:]
    onnx.save(graph, str(root / "foreign.onnx"))
    (root / "garbage.engine").write_bytes(b"\x00" * 64)
    (root / "notes.txt").write_text("not json")
    val = json.loads((root / "data" / "annotations" / "instances_val.json").read_text())
    (root / "nobox" / "annotations").mkdir(parents=True)  # the val images, annotated with no boxes
    (root / "nobox" / "annotations" / "instances_val.json").write_text(json.dumps({**val, "annotations": []}))
    (root / "nobox" / "val").symlink_to(root / "data" / "val")
    flat = [{**a, "bbox": [*a["bbox"][:3], 0], "area": 0} for a in val["annotations"]]  # every box 0 px high
    (root / "flat" / "annotations").mkdir(parents=True)
    (root / "flat" / "annotations" / "instances_val.json").write_text(json.dumps({**val, "annotations": flat}))
    (root / "flat" / "val").symlink_to(root / "data" / "val")
    (root / "folder.json").mkdir()
    (root / "empty.onnx").write_bytes(b"")
    (root / "list.json").write_text(json.dumps([val]))
    (root / "textbox.json").write_text(json.dumps({**val, "annotations": [{**a, "bbox": ["1", "2", "3", "4"]}
                                                                          for a in val["annotations"]]}))
    (root / "nosize.json").write_text(json.dumps({**val, "images": [{k: v for k, v in i.items() if k != "height"}
                                                                    for i in val["images"]]}))
    (root / "empty").mkdir()
    write_video(root / "clip.mp4", SyntheticVideo(seed=1), 5)
    import cv2

    cv2.imwrite(str(root / "huge.png"), np.zeros((12000, 9000, 3), np.uint8))  # 108 MP, 0.4 MB on disk
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
                                    "arch resnet50_fpn contradicts"),
    "classes contradict checkpoint": (["export", "--weights", "{root}/w.pth", "--num-classes", "3", "-o", "{root}/x.onnx"],
                                      "num_classes 3 contradicts"),
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
    # numbers nobody validated
    "conf negative": (["detect", "--model", "{root}/m.onnx", "--source", "{root}/three", "--conf", "-0.1"], "between 0 and 1"),
    "bench --iters 0": (["bench", "--model", "{root}/m.onnx", "--iters", "0"], "--iters: must be a whole number of at least 1"),
    "bench --warmup -1": (["bench", "--model", "{root}/m.onnx", "--warmup", "-1"], "--warmup: must be a whole number of at least 0"),
    "verify --count -5": (["verify", "--model", "{root}/m.onnx", "--weights", "{root}/w.pth", "--images", "{root}/three",
                           "--count", "-5"], "--count: must be a whole number of at least 1"),
    "synth --sides reversed": (["synth", "--out", "{root}/new-synth", "--sides", "300", "200"], "MIN <= MAX"),
    "synth --images 0": (["synth", "--out", "{root}/new-synth", "--images", "0"], "--images: must be a whole number"),
    "detect --threads 0": (["detect", "--model", "{root}/m.onnx", "--source", "{root}/three", "--threads", "0"],
                           "--threads: must be a whole number of at least 1"),
    "detect --max-fps 0": (["detect", "--model", "{root}/m.onnx", "--source", "{root}/clip.mp4", "--max-fps", "0"],
                           "--max-fps: must be a number above 0"),
    "detect --max-fps text": (["detect", "--model", "{root}/m.onnx", "--source", "{root}/clip.mp4", "--max-fps", "fast"],
                              "--max-fps: must be a number, got 'fast'"),
    "train --epochs 0": (["train", "--data", "{root}/data", "--out", "{root}/runs", "--epochs", "0"], "--epochs: must be"),
    "train --batch-size 0": (["train", "--data", "{root}/data", "--out", "{root}/runs", "--batch-size", "0"], "--batch-size: must be"),
    "export --imgsz 100000": (["export", "--weights", "{root}/w.pth", "--imgsz", "100000", "-o", "{root}/x.onnx"],
                              "GiB to export"),
    "export --imgsz not a multiple of 32": (["export", "--weights", "{root}/w.pth", "--imgsz", "100", "-o", "{root}/x.onnx"],
                                            "multiple of 32"),
    "export --imgsz three numbers": (["export", "--weights", "{root}/w.pth", "--imgsz", "1", "2", "3", "-o", "{root}/x.onnx"],
                                     "--imgsz takes H W or one N"),
    "export --batch reversed": (["export", "--weights", "{root}/w.pth", "--batch", "4", "2", "1", "-o", "{root}/x.onnx"],
                                "needs 1 <= MIN <= OPT <= MAX"),
    "unknown option": (["detect", "--model", "{root}/m.onnx", "--source", "{root}/three", "--bogus"], "unrecognized arguments"),
    # output locations that cannot be written: refused before any work
    "export to a read-only place": (["export", "--weights", "{root}/w.pth", "-o", "/sys/retina-edge/m.onnx"], "cannot write"),
    "build to a read-only place": (["build", "--int8", "--weights", "{root}/w.pth", "--calib", "{root}/data/train",
                                    "-o", "/sys/retina-edge/m.onnx"], "cannot write"),
    "train into a read-only place": (["train", "--data", "{root}/data", "--out", "/sys/retina-edge/run"], "cannot write"),
    "synth into a read-only place": (["synth", "--out", "/proc/retina-edge"], "cannot write"),
    "detect --save-dir read-only": (["detect", "--model", "{root}/m.onnx", "--source", "{root}/three", "--save-dir",
                                     "/sys/retina-edge"], "cannot write"),
    "detect --save-json onto a folder": (["detect", "--model", "{root}/m.onnx", "--source", "{root}/three", "--save-json",
                                          "{root}/folder.json"], "is a folder; a file is needed"),
    "verify --report read-only": (["verify", "--model", "{root}/m.onnx", "--weights", "{root}/w.pth", "--images",
                                   "{root}/three", "--report", "/sys/retina-edge"], "cannot write"),
    "bench --json read-only": (["bench", "--model", "{root}/m.onnx", "--json", "/sys/x.json"], "cannot write"),
    "eval --metrics-json read-only": (["eval", "--weights", "{root}/m.onnx", "--data", "{root}/data", "--metrics-json",
                                       "/sys/x.json"], "cannot write"),
    # answers that would look right but are not
    "verify --ann of another dataset": (["verify", "--model", "{root}/m.onnx", "--weights", "{root}/w.pth", "--images",
                                         "{root}/data/val", "--ann", "{root}/other/annotations/instances_val.json"],
                                        "do not have the size"),
    "verify against other classes": (["verify", "--model", "{root}/m.onnx", "--weights", "{root}/three-classes.pth",
                                      "--images", "{root}/three"], "the classes differ"),
    "verify against another architecture": (["verify", "--model", "{root}/m.onnx", "--weights", "{root}/other-arch.pth",
                                             "--images", "{root}/three"], "the architectures differ"),
    "verify --ann whose boxes are all degenerate": (["verify", "--model", "{root}/m.onnx", "--weights", "{root}/w.pth",
                                                     "--images", "{root}/data/val", "--ann",
                                                     "{root}/flat/annotations/instances_val.json"], "has no annotated boxes"),
    "eval on boxes all degenerate": (["eval", "--weights", "{root}/m.onnx", "--data", "{root}/flat", "--split", "val"],
                                     "has no annotated boxes"),
    "--val with degenerate boxes only": (["build", "--int8", "--weights", "{root}/w.pth", "--calib", "{root}/data/train",
                                          "--calib-count", "4", "--max-ap-drop", "0.1", "--val", "{root}/flat", "-o",
                                          "{root}/q.onnx"], "has no annotated boxes"),
    "verify --ann not JSON": (["verify", "--model", "{root}/m.onnx", "--weights", "{root}/w.pth", "--images", "{root}/three",
                               "--ann", "{root}/notes.txt"], "cannot read annotation file"),
    "detect --classes unknown": (["detect", "--model", "{root}/m.onnx", "--source", "{root}/three", "--classes", "zebra"],
                                 "unknown class 'zebra'"),
    "detect --classes unknown id": (["detect", "--model", "{root}/m.onnx", "--source", "{root}/three", "--classes", "77"],
                                    "unknown class '77'"),
    "detect video with --save-json": (["detect", "--model", "{root}/m.onnx", "--source", "{root}/clip.mp4", "--save-json",
                                       "{root}/d.json"], "--save-dir and --save-json are for images"),
    # damaged, foreign and missing files
    "garbage engine": (["detect", "--model", "{root}/garbage.engine", "--source", "{root}/three"], "not a retina-edge engine"),
    "damaged metadata in an ONNX": (["detect", "--model", "{root}/damaged.onnx", "--source", "{root}/three"],
                                    "damaged retina-edge metadata"),
    "ONNX from another tool": (["detect", "--model", "{root}/foreign.onnx", "--source", "{root}/three"],
                               "carries no retina-edge metadata"),
    "truncated ONNX": (["detect", "--model", "{root}/notes.txt", "--source", "{root}/three"], "not a readable ONNX model"),
    "image over 100 MP": (["detect", "--model", "{root}/m.onnx", "--source", "{root}/huge.png"], "over the 100 MP"),
    "missing model": (["detect", "--model", "{root}/nope.onnx", "--source", "{root}/three"], "model file not found"),
    "missing source": (["detect", "--model", "{root}/m.onnx", "--source", "{root}/nope.jpg"], "source not found"),
    "missing weights": (["export", "--weights", "{root}/nope.pth", "-o", "{root}/x.onnx"], "weights file not found"),
    "not a checkpoint": (["inspect", "--weights", "{root}/notes.txt"], "cannot read weights file"),
    "unknown torchvision weights": (["export", "--weights", "torchvision:yolo", "-o", "{root}/x.onnx"],
                                    "unknown torchvision weights"),
    "ONNX model asked to run on TensorRT": (["detect", "--model", "{root}/m.onnx", "--source", "{root}/three", "--backend",
                                             "tensorrt"], "build an engine from it first"),
    "eval of a missing dataset": (["eval", "--weights", "{root}/m.onnx", "--data", "{root}/nope"], "not found"),
    "verify an empty folder": (["verify", "--model", "{root}/m.onnx", "--weights", "{root}/w.pth", "--images", "{root}/empty"],
                               "no images in"),
    "int8 without --calib": (["build", "--int8", "--weights", "{root}/w.pth", "-o", "{root}/q.onnx"], "INT8 needs calibration"),
    "missing calibration source": (["build", "--int8", "--weights", "{root}/w.pth", "--calib", "{root}/nope", "-o",
                                    "{root}/q.onnx"], "calibration source not found"),
    "train without data": (["train", "--data", "{root}/nope", "--out", "{root}/runs"], "not found"),
    "resume with nothing saved": (["train", "--data", "{root}/data", "--out", "{root}/fresh", "--resume", "--iterations", "1"],
                                  "nothing to resume"),
    "bench of nothing": (["bench"], "give at least one --model or --weights"),
    # the INT8 accuracy search
    "negative AP budget": (["build", "--int8", "--weights", "{root}/w.pth", "--calib", "{root}/data/train", "--max-ap-drop",
                            "-1", "--val", "{root}/data", "-o", "{root}/q.onnx"], "max_ap_drop is in AP points"),
    "absurd AP budget": (["build", "--int8", "--weights", "{root}/w.pth", "--calib", "{root}/data/train", "--max-ap-drop",
                          "250", "--val", "{root}/data", "-o", "{root}/q.onnx"], "max_ap_drop is in AP points"),
    "--val without annotations": (["build", "--int8", "--weights", "{root}/w.pth", "--calib", "{root}/data/train",
                                   "--calib-count", "4", "--max-ap-drop", "0.1", "--val", "{root}/three", "-o", "{root}/q.onnx"], "not found"),
    "--val with no boxes": (["build", "--int8", "--weights", "{root}/w.pth", "--calib", "{root}/data/train",
                             "--calib-count", "4", "--max-ap-drop", "0.1", "--val", "{root}/nobox", "-o", "{root}/q.onnx"],
                            "has no annotated boxes"),
    "budget without --val": (["build", "--int8", "--weights", "{root}/w.pth", "--calib", "{root}/data/train",
                              "--max-ap-drop", "0.1", "-o", "{root}/q.onnx"], "needs both --max-ap-drop"),
    "triton repository of a missing model": (["triton", "--model", "{root}/missing.onnx", "-o", "{root}/repo"],
                                             "model file not found"),
    "serve a missing repository": (["serve", "--repo", "{root}/no-repo"], "model repository not found"),
    "local runtime flags for a served model": (["detect", "--model", "triton://127.0.0.1:1/retina_edge", "--device", "cpu",
                                                "--source", "{root}/data/val"], "the server decides"),
    # issue 32
    "bench --batch larger than the images": (["bench", "--model", "{root}/m.onnx", "--images", "{root}/data/train", "--batch", "64"],
                                             "--batch 64 needs 64 images and"),
    "bench --batch beyond the synthetic pool": (["bench", "--model", "{root}/m.onnx", "--batch", "100000"],
                                                "synthetic images go up to 256"),
    "serve on port 70000": (["serve", "--repo", "{root}/empty", "--grpc-port", "70000"], "port number from 1 to 65535"),
    "serve an empty repository": (["serve", "--repo", "{root}/empty"], "holds no model (no folder with a config.pbtxt)"),
    "triton --instances 10000": (["triton", "--model", "{root}/m.onnx", "-o", "{root}/repo", "--instances", "10000"],
                                 "at most 64"),
    "a Triton address with a port that is no number": (["detect", "--model", "triton://127.0.0.1:abc/retina_edge",
                                                        "--source", "{root}/three"], "not a Triton address"),
    "verify --ann a video": (["verify", "--model", "{root}/m.onnx", "--weights", "{root}/w.pth", "--images", "{root}/three",
                              "--ann", "{root}/clip.mp4"], "cannot read annotation file"),
    "verify --ann a JSON list": (["verify", "--model", "{root}/m.onnx", "--weights", "{root}/w.pth", "--images",
                                  "{root}/data/val", "--ann", "{root}/list.json"], "a JSON list, not an object"),
    "verify --ann with text bboxes": (["verify", "--model", "{root}/m.onnx", "--weights", "{root}/w.pth", "--images",
                                       "{root}/data/val", "--ann", "{root}/textbox.json"], "not 4 numbers"),
    "verify --ann with an image lacking its size": (["verify", "--model", "{root}/m.onnx", "--weights", "{root}/w.pth",
                                                     "--images", "{root}/data/val", "--ann", "{root}/nosize.json"],
                                                    "an entry has no 'height'"),
    "synth --sides 10 20": (["synth", "--out", "{root}/new-synth", "--sides", "10", "20"], "--sides MIN must be at least 18"),
    "train --lr -1": (["train", "--data", "{root}/data", "--out", "{root}/runs", "--lr", "-1"], "--lr: must be a number above 0"),
    "train --config not JSON": (["train", "--config", "{root}/notes.txt", "--data", "{root}/data", "--out", "{root}/runs"],
                                "cannot read the training options"),
    "train --config a video": (["train", "--config", "{root}/clip.mp4", "--data", "{root}/data", "--out", "{root}/runs"],
                               "not a JSON text"),
    "model-options repeating num_classes": (["train", "--data", "{root}/data", "--out", "{root}/runs", "--model-options",
                                             '{{"num_classes": 3}}'], "--model-options cannot set num_classes"),
    "export -o model.txt": (["export", "--weights", "{root}/w.pth", "-o", "{root}/model.txt"], "name it model.onnx"),
    "build -o model.pth": (["build", "--weights", "{root}/w.pth", "-o", "{root}/model.pth"], "this writes .onnx or .engine"),
    "an empty ONNX file": (["detect", "--model", "{root}/empty.onnx", "--source", "{root}/three"], "is empty (0 bytes)"),
    "budget on an FP32 build": (["build", "--weights", "{root}/w.pth", "--max-ap-drop", "0.1", "--val", "{root}/data",
                                 "-o", "{root}/q.onnx"], "fp32 has none to keep (see --max-ap-drop, --precision)"),
}


def snapshot(root):
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_file_that_is_no_checkpoint_is_one_short_line(root, capsys):
    assert main(["export", "--weights", str(root / "notes.txt"), "-o", str(root / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a PyTorch checkpoint" in err and len(err) < 400, err


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
    assert "TensorRT" not in captured.out  # a graph for CPUs ends without advice about engines


def test_build_help_says_which_video_frames_calibrate(capsys):
    assert main(["build", "--help"]) == 0
    assert "video file (every 10th frame)" in " ".join(capsys.readouterr().out.split())


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


def test_full_disk_is_one_line_and_keeps_the_previous_file(root, tmp_path, monkeypatch, capsys):
    import errno

    import retina_edge.atomic

    target = tmp_path / "m.onnx"
    target.write_bytes(b"the previous model")

    def full(_fd):  # noqa: ANN001
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(retina_edge.atomic.os, "fsync", full)
    assert main(["export", "--weights", str(root / "w.pth"), "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"error: No space left on device: {target}" in err and "Traceback" not in err
    assert target.read_bytes() == b"the previous model" and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_unwritable_statistics_cache_only_warns(root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RETINA_EDGE_CACHE", "/sys/retina-edge-cache")
    assert main(["build", "--int8", "--target", "cpu", "--weights", str(root / "w.pth"), "--calib", str(root / "data" / "train"),
                 "--calib-count", "4", "-o", str(tmp_path / "q.onnx")]) == 0
    assert "could not cache the calibration statistics" in capsys.readouterr().err
    assert (tmp_path / "q.onnx").is_file()


def test_interrupted_folder_keeps_its_detections(root, tmp_path, monkeypatch, capsys):
    from retina_edge.runtime import Detector

    detect, calls = Detector.detect, []

    def stop_on_second(self, images):  # noqa: ANN001
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return detect(self, images)

    monkeypatch.setattr(Detector, "detect", stop_on_second)
    out = tmp_path / "d.json"
    assert main(["detect", "--model", str(root / "m.onnx"), "--source", str(root / "data" / "train"),
                 "--save-json", str(out), "--score-thresh", "0"]) == 130
    assert "interrupted: after 1 of" in capsys.readouterr().err
    records = json.loads(out.read_text())
    assert records and len({r["file_name"] for r in records}) == 1  # the image done before the interrupt


def test_detector_names_a_wrong_array_shape(root):
    from retina_edge.errors import DataError
    from retina_edge.runtime import Detector

    with pytest.raises(DataError, match=r"got an array of shape \(250, 300\)"):
        Detector(root / "m.onnx").detect(np.zeros((250, 300), np.uint8))


def test_threads_beyond_the_cores_are_bounded_and_said(root, capsys):
    from retina_edge.resources import usable_cores

    assert main(["detect", "--model", str(root / "m.onnx"), "--source", str(root / "three" / "0.jpg"), "--threads", "100000"]) == 0
    assert f"100000 threads asked for, and this process may run on {usable_cores()} cores" in capsys.readouterr().err


def test_bench_times_full_batches_of_the_size_asked(root):
    from retina_edge.quality.bench import STAGES, BenchEntry, run_bench

    sizes = []
    entry = BenchEntry("counting", lambda chunk: sizes.append(len(chunk)) or dict.fromkeys(STAGES, 0.001))
    (summary,) = run_bench([entry], [np.zeros((8, 8, 3), np.uint8)] * 16, batch=5, iterations=6, warmup=1)
    assert sizes == [5] * 7 and summary["batch"] == 5


def _sigterm_self() -> None:
    """What systemd, Kubernetes and docker stop send; Python runs the handler at the next bytecode."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_ends_a_folder_run_as_ctrl_c_does_keeping_its_detections(root, tmp_path, monkeypatch, capsys):
    from retina_edge.runtime import Detector

    detect, calls = Detector.detect, []

    def terminated_on_second(self, images):  # noqa: ANN001
        calls.append(1)
        if len(calls) == 2:
            _sigterm_self()
        return detect(self, images)

    monkeypatch.setattr(Detector, "detect", terminated_on_second)
    out = tmp_path / "d.json"
    assert main(["detect", "--model", str(root / "m.onnx"), "--source", str(root / "data" / "train"),
                 "--save-json", str(out), "--score-thresh", "0"]) == 130
    err = capsys.readouterr().err
    assert "interrupted (SIGTERM): after 1 of" in err and "Traceback" not in err
    assert len({r["file_name"] for r in json.loads(out.read_text())}) == 1


def test_sigterm_during_export_leaves_no_temporary_files(root, tmp_path, monkeypatch, capsys):
    import signal
    import tempfile

    import retina_edge.export.onnx_export as onnx_export

    simplify = onnx_export.simplify

    def terminated(*args, **kwargs):  # noqa: ANN002, ANN003
        _sigterm_self()
        return simplify(*args, **kwargs)

    monkeypatch.setattr(onnx_export, "simplify", terminated)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    before = signal.getsignal(signal.SIGTERM)
    assert main(["export", "--weights", str(root / "w.pth"), "-o", str(tmp_path / "out" / "m.onnx")]) == 130
    assert "interrupted (SIGTERM)" in capsys.readouterr().err
    assert list((tmp_path / "tmp").iterdir()) == [] and list((tmp_path / "out").iterdir()) == []  # no .m.onnx.*.tmp
    assert signal.getsignal(signal.SIGTERM) is before  # the CLI gives the handler back


@pytest.mark.slow
def test_sigterm_to_a_trainings_process_group_saves_last_and_is_quiet(root, tmp_path):
    """systemd's default: SIGTERM to every process of the unit, DataLoader workers included."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    command = [sys.executable, "-m", "retina_edge.cli.main", "train", "--data", str(root / "data"), "--out", str(out),
               "--arch", "resnet18_fpn", "--imgsz", "128", "--batch-size", "2", "--workers", "2", "--no-eval",
               "--iterations", "500", "--model-options", json.dumps({"backbone_width": 16, "fpn_channels": 32, "head_convs": 1})]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline, lines = time.monotonic() + 300, []
        while time.monotonic() < deadline and not any(line.startswith("train ") and line[6:7].isdigit() for line in lines):
            lines.append(process.stdout.readline())
            assert lines[-1] or process.poll() is None, "".join(lines)
        os.killpg(process.pid, signal.SIGTERM)
        rest = process.communicate(timeout=300)[0]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    output = "".join(lines) + rest
    assert process.returncode == 130, output
    assert "Traceback" not in output and "killed by signal" not in output
    assert "saved" in output and (out / "last.pth").is_file()


def test_full_disk_during_int8_build_keeps_the_model_and_its_calibration_cache_as_a_pair(root, tmp_path, monkeypatch, capsys):
    import errno
    from pathlib import Path

    import retina_edge.export.graph_weights as graph_weights

    model, cache = tmp_path / "q.onnx", tmp_path / "q.calib.cache"
    model.write_bytes(b"the previous model")
    cache.write_text("the previous model's cache")

    write_model = graph_weights.write_model

    def full_beside_the_output(graph, path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if Path(path).parent == tmp_path:  # the scratch folder's files still fit
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_model(graph, path, *args, **kwargs)

    monkeypatch.setattr(graph_weights, "write_model", full_beside_the_output)
    assert main(["build", "--int8", "--target", "tensorrt", "--weights", str(root / "w.pth"), "--calib",
                 str(root / "data" / "train"), "--calib-count", "4", "-o", str(model)]) == 2
    err = capsys.readouterr().err
    assert f"error: No space left on device: {model}" in err and "Traceback" not in err
    assert model.read_bytes() == b"the previous model" and cache.read_text() == "the previous model's cache"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.calib.cache", "q.onnx"]


def test_calibration_takes_tiny_images_of_any_format(tmp_path):
    """OpenCV 5.1 fails an assertion decoding at 1/8 size (how calibration checks its images) any
    non-JPEG image under 8 pixels a side; every decode path treats such files as images."""
    import cv2

    from retina_edge.calib.sources import CalibrationItem, CalibrationReport, usable_items
    from retina_edge.imageio import read_image_rgb

    items, report = [], CalibrationReport()
    for index, suffix in enumerate((".png", ".bmp", ".webp", ".tiff")):
        path = tmp_path / f"tiny{index}{suffix}"
        cv2.imwrite(str(path), np.full((3, 5, 3), 40 * index, np.uint8))
        assert read_image_rgb(path).shape == (3, 5, 3)
        items.append(CalibrationItem(str(path)))
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    items.append(CalibrationItem(str(tmp_path / "junk.png")))
    assert len(usable_items(items, 10, report)) == 4 and report.unreadable == 1


def test_a_closed_detector_says_so(root):
    from retina_edge.errors import RetinaEdgeError
    from retina_edge.runtime import Detector

    detector = Detector(root / "m.onnx")
    detector.close()
    with pytest.raises(RetinaEdgeError, match="this Detector of m.onnx is closed"):
        detector.detect(np.zeros((64, 80, 3), np.uint8))


def test_a_full_disk_while_copying_a_folder_is_one_line_not_a_list(tmp_path, monkeypatch, capsys):
    """serve copies Triton's Python backend into the cache once; shutil.copytree reports a full disk
    as one error holding a list of (source, target, reason)."""
    import errno
    import importlib.util
    import shutil

    if shutil.which("tritonserver") is None and importlib.util.find_spec("pytriton") is None:
        pytest.skip("no tritonserver")
    (tmp_path / "repo" / "m").mkdir(parents=True)
    (tmp_path / "repo" / "m" / "config.pbtxt").write_text('name: "m"')
    monkeypatch.setenv("RETINA_EDGE_CACHE", str(tmp_path / "cache"))

    def full(source, target, **_):  # noqa: ANN001, ANN003
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", full)  # copytree's copy2 calls it
    assert main(["serve", "--repo", str(tmp_path / "repo"), "--http-port", "1", "--grpc-port", "2", "--metrics-port", "3"]) == 2
    err = capsys.readouterr().err
    assert "error: [Errno 28] No space left on device: " in err and "more files)" in err and "[(" not in err, err


def test_bench_openvino_adds_no_row_the_model_already_has(root, capsys):
    """``--openvino`` times each ONNX model with OpenVINO too, unless it already ran on OpenVINO (f32)."""
    assert main(["bench", "--model", str(root / "m.onnx"), "--backend", "openvino", "--openvino", "--iters", "1",
                 "--warmup", "0"]) == 0
    assert capsys.readouterr().out.count("[openvino") == 1
