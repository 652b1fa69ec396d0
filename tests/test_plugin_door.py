"""One plugin door for every kind of extension: a package outside the library (tests/plugin_package,
``retina-edge-toys``), installed next to retina-edge with pip, adds an architecture, a precision
recipe, a backend, a graph tail and a tracker through its ``retina_edge.plugins`` entry point, and each
is used from the shell in fresh processes (train, export, build, verify, detect), with no library file
touched and nothing registered by the test itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

PACKAGE = Path(__file__).resolve().parent / "plugin_package"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The plugin package pip-installed (a real wheel build, dist-info and all) into its own folder."""
    target = tmp_path_factory.mktemp("site")
    # Built from a copy: pip's in-tree build would leave build/ and *.egg-info in the source tree.
    source = shutil.copytree(PACKAGE, tmp_path_factory.mktemp("source") / "plugin_package",
                             ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True)
    assert (target / "retina_edge_toys-0.1.dist-info" / "entry_points.txt").is_file()
    return target


def shell(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``retina-edge ARGS`` in a new process that sees the plugin package on its path."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run([sys.executable, "-m", "retina_edge.cli.main", *args], cwd=cwd, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, f"retina-edge {' '.join(args)}: {result.stderr[-2000:]}"
    return result


@pytest.fixture(scope="module")
def trained(installed, tmp_path_factory):
    """A checkpoint of the plugin's architecture, trained (two steps) by ``retina-edge train``; its
    score threshold is low enough for an untrained model's detections to come through."""
    work = tmp_path_factory.mktemp("work")
    shell(installed, "synth", "--out", "data", "--images", "8", "--seed", "3", "--val-fraction", "0.5",
          "--sides", "128", "160", cwd=work)
    shell(installed, "train", "--data", "data", "--arch", "toymobile_fpn", "--imgsz", "128", "--iterations", "2",
          "--batch-size", "2", "--workers", "0", "--no-eval", "--out", "run",
          "--model-options", '{"backbone_width": 8, "fpn_channels": 32, "score_thresh": 0.001}', cwd=work)
    return work


def test_the_architecture_lists_trains_and_exports(installed, trained):
    assert "toymobile_fpn" in shell(installed, "archs", cwd=trained).stdout
    shell(installed, "export", "--weights", "run/model_final.pth", "-o", "m.onnx", cwd=trained)
    model = json.loads({p.key: p.value for p in onnx.load(trained / "m.onnx").metadata_props}["retina_edge.model"])
    assert model["arch"] == "toymobile_fpn"


def test_the_precision_builds_and_verify_reads_its_thresholds(installed, trained):
    """On the trained preset (an untrained model's near-equal scores would make any rounding reorder them)."""
    out = shell(installed, "build", "--precision", "fp16w", "--target", "cpu", "--weights", "preset:synth",
                "-o", "w16.onnx", cwd=trained).stdout
    assert "fp16w" in out
    graph = onnx.load(trained / "w16.onnx", load_external_data=False)
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.graph.initializer)
    out = shell(installed, "verify", "--model", "w16.onnx", "--weights", "preset:synth", "--images", "data/val",
                cwd=trained).stdout
    assert "precision fp16w, 4 images: PASS" in out


def test_the_backend_and_the_tail_detect(installed, trained):
    shell(installed, "export", "--weights", "run/model_final.pth", "--tail", "none", "-o", "raw.onnx", cwd=trained)
    for backend in ("numpy-ref", "onnxruntime"):
        shell(installed, "detect", "--model", "raw.onnx", "--backend", backend, "--source", "data/val",
              "--save-json", f"{backend}.json", cwd=trained)
    toy, ort = (json.loads((trained / f"{name}.json").read_text()) for name in ("numpy-ref", "onnxruntime"))
    assert len(toy) == len(ort) > 0
    np.testing.assert_allclose([d["bbox"] for d in toy], [d["bbox"] for d in ort], atol=0.05)

    shell(installed, "export", "--weights", "run/model_final.pth", "--tail", "nms-agnostic", "-o", "agnostic.onnx",
          cwd=trained)
    shell(installed, "detect", "--model", "agnostic.onnx", "--source", "data/val", "--save-json", "agnostic.json",
          cwd=trained)
    assert json.loads((trained / "agnostic.json").read_text())
    # The graph's own output (network pixels, before the host clips boxes to each image): no two boxes
    # overlap beyond the NMS threshold, whatever their classes.
    import onnxruntime

    session = onnxruntime.InferenceSession(str(trained / "agnostic.onnx"))
    shape = [1 if isinstance(d, str) else d for d in session.get_inputs()[0].shape]
    count, boxes, _, labels = session.run(None, {"images": np.random.default_rng(0).normal(size=shape).astype(np.float32)})
    kept = int(count[0, 0])
    assert kept > 1 and len(set(labels[0, :kept].tolist())) > 1
    assert _largest_iou(boxes[0, :kept]) <= 0.5 + 1e-6


def test_the_tracker_tracks_a_video(installed, trained):
    import cv2

    shell(installed, "export", "--weights", "run/model_final.pth", "--tail", "nms", "-o", "track.onnx", cwd=trained)
    frame = cv2.imread(str(next((trained / "data" / "val").iterdir())))
    # MJPEG codes each frame alone: five equal frames decode equal (an inter-frame codec's would not)
    writer = cv2.VideoWriter(str(trained / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                             (frame.shape[1], frame.shape[0]))
    for _ in range(5):
        writer.write(frame)
    writer.release()
    shell(installed, "detect", "--model", "track.onnx", "--source", "clip.avi", "--track", "--tracker", "greedy-iou",
          "--track-reid", "0", "--jsonl", "tracks.jsonl", cwd=trained)
    frames = [json.loads(line) for line in (trained / "tracks.jsonl").read_text().splitlines()]
    ids = [[d["track_id"] for d in f["detections"]] for f in frames]
    # (an untrained model gives boxes that coincide, between which the tracker may hand IDs around)
    assert len(frames) == 5 and ids[0] and len(set(ids[0])) == len(ids[0])
    assert all(set(frame_ids) == set(ids[0]) for frame_ids in ids), "the same frame five times: no ID new, none lost"


def _largest_iou(boxes: np.ndarray) -> float:
    """The largest IoU between two of ``boxes`` (x1y1x2y2)."""
    x1, y1 = np.maximum(boxes[:, None, 0], boxes[None, :, 0]), np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x2, y2 = np.minimum(boxes[:, None, 2], boxes[None, :, 2]), np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou = inter / np.maximum(area[:, None] + area[None, :] - inter, 1e-9)
    np.fill_diagonal(iou, 0)
    return float(iou.max()) if len(boxes) > 1 else 0.0
