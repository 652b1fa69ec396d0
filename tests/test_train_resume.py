"""Training stopped anywhere (SIGINT/SIGTERM) saves last.pth, and --resume continues exactly where
an uninterrupted run would be: same weights, optimizer state, learning rate and data order."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import torch

from retina_edge.cli.main import main
from retina_edge.data.synth import SynthConfig, write_dataset

TINY = ["--arch", "resnet18_fpn", "--imgsz", "128", "--batch-size", "2", "--workers", "0", "--no-eval",
        "--multiscale", "96", "112", "128", "--optimizer", "adamw", "--lr", "1e-3", "--warmup-iters", "2",
        "--model-options", json.dumps({"backbone_width": 16, "fpn_channels": 32, "head_convs": 1,
                                       "anchor_sizes": [16, 32, 64, 128, 256]})]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    write_dataset(root / "data", SynthConfig(num_images=10, seed=7, min_side=96, max_side=128))  # 8 train: 4 per epoch
    return root / "data"


def train(data, out, *extra):  # noqa: ANN001, ANN002
    return main(["train", "--data", str(data), "--out", str(out), "--iterations", "7", *TINY, *extra])


def test_interrupted_and_resumed_equals_uninterrupted(data, tmp_path, monkeypatch, capsys):
    assert train(data, tmp_path / "full") == 0
    from retina_edge.progress import Progress

    update = Progress.update

    def interrupt_at_3(self, done, **fields):  # noqa: ANN001, ANN003
        update(self, done, **fields)
        if done == 3:
            signal.raise_signal(signal.SIGINT)  # the real handler, mid-epoch (4 iterations per epoch)

    monkeypatch.setattr(Progress, "update", interrupt_at_3)
    assert train(data, tmp_path / "cut") == 130
    assert "SIGINT at iteration 3 of 7; saved" in capsys.readouterr().err
    assert torch.load(tmp_path / "cut" / "last.pth", weights_only=True)["iteration"] == 3
    monkeypatch.setattr(Progress, "update", update)
    assert train(data, tmp_path / "cut", "--resume") == 0
    full = torch.load(tmp_path / "full" / "last.pth", weights_only=True)
    resumed = torch.load(tmp_path / "cut" / "last.pth", weights_only=True)
    assert resumed["iteration"] == full["iteration"] == 7
    for name, value in full["model"].items():
        assert torch.equal(value, resumed["model"][name]), name
    for key, state in full["optimizer"]["state"].items():
        for field, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(resumed["optimizer"]["state"][key][field]))
    assert full["optimizer"]["param_groups"][0]["lr"] == resumed["optimizer"]["param_groups"][0]["lr"]
    assert torch.equal(full["rng"], resumed["rng"])


def test_sigterm_saves_and_exits_130(data, tmp_path):
    """A real signal to a real process (as systemd or Kubernetes send it)."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "retina_edge.cli.main", "train", "--data", str(data), "--out", str(out),
                             "--iterations", "500", "--checkpoint-every", "1000", *TINY],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.startswith("train 1/500"):  # a log gets the first step's progress line at once
            proc.send_signal(signal.SIGTERM)
            break
    assert proc.wait(timeout=120) == 130
    err = proc.stderr.read()
    assert "interrupted: SIGTERM at iteration" in err and "--resume" in err and "Traceback" not in err
    saved = torch.load(out / "last.pth", weights_only=True)["iteration"]
    assert 1 <= saved < 500
