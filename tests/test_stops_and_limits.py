"""Stops, limits and checks every entry point shares: SIGINT stops a command even where the shell
started it with SIGINT ignored, an AP budget is never "met" on too few images for a bootstrap to be
evidence, a thread count beyond the cores is bounded in the library (for Python callers as for the
CLI), a missing optional package is said before the model loads, an OpenVINO precision is not
ignored by ``auto``, and an OpenVINO error says its reason."""

from __future__ import annotations

import json
import logging
import os
import signal

import pytest
from tiny import tiny_model

from retina_edge.cli.main import main
from retina_edge.data.synth import SynthConfig, write_dataset
from retina_edge.model.checkpoints import save_checkpoint


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A tiny checkpoint and a COCO set of 6 images (3 for validation)."""
    root = tmp_path_factory.mktemp("stops")
    write_dataset(root / "data", SynthConfig(num_images=6, seed=4, min_side=96, max_side=128, val_fraction=0.5))
    save_checkpoint(root / "w.pth", tiny_model(min_size=128, max_size=128))
    return root


def build_command(root, out) -> list[str]:  # noqa: ANN001
    return ["build", "--int8", "--target", "cpu", "--weights", str(root / "w.pth"), "--imgsz", "128",
            "--calib", str(root / "data" / "train"), "--calib-count", "3", "--max-ap-drop", "0.5",
            "--val", str(root / "data"), "-o", str(out)]


def test_sigint_stops_a_build_in_its_sensitivity_probe_even_when_started_ignoring_it(root, tmp_path, monkeypatch,
                                                                                      capsys):
    """A command started in the background of a script (``cmd &``, CI runners) inherits SIGINT ignored,
    and Python leaves it so: ``kill -INT`` during the probe let the build go on, replace -o and exit 0."""
    import retina_edge.calib.search as search

    probe = search.layer_sensitivity

    def interrupted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        os.kill(os.getpid(), signal.SIGINT)
        return probe(*args, **kwargs)

    monkeypatch.setattr(search, "layer_sensitivity", interrupted)
    out = tmp_path / "m.onnx"
    out.write_bytes(b"an earlier good model")
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert main(build_command(root, out)) == 130
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # given back as it was
    finally:
        signal.signal(signal.SIGINT, previous)
    assert out.read_bytes() == b"an earlier good model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no .best.onnx, no staged files
    err = capsys.readouterr().err
    assert "retina-edge build: interrupted" in err and "Traceback" not in err


def test_a_budget_on_3_validation_images_is_unresolved_not_met(root, tmp_path, capsys):
    """The issue's case: "budget met" from a bootstrap over 3 images, on which INT8 and FP32 agreed."""
    out = tmp_path / "m.onnx"
    assert main([*build_command(root, out), "--search-time-limit", "0.001"]) == 1  # no sensitivity probe: cheaper
    err = capsys.readouterr().err
    assert "3 validation images are too few for a bootstrap interval to be evidence (at least 20); about 20 " \
           "validation images would" in err
    record = json.loads((tmp_path / "m.search.json").read_text())
    assert record["verdict"] == "unresolved" and not record["budget_met"] and record["images_needed"] == 20
    assert not out.exists() and (tmp_path / "m.best.onnx").is_file()


def test_threads_beyond_the_cores_are_bounded_for_python_callers_too(caplog):
    """The CLI bounded --threads, the library did not: BackendOptions(threads=100000) started 18.7k
    ONNX Runtime threads (16.5 GB)."""
    from retina_edge.errors import RetinaEdgeError
    from retina_edge.resources import usable_cores
    from retina_edge.runtime import BackendOptions

    cores = usable_cores()
    with caplog.at_level(logging.WARNING):
        options = BackendOptions(threads=100000)
    assert options.threads == cores and options.replace(streams=2).threads == cores
    assert f"100000 threads asked for, and this process may run on {cores} cores: using {cores}" in caplog.text
    assert BackendOptions(threads=1).threads == 1
    for bad in (0, -3, 2.5, True, "4"):
        with pytest.raises(RetinaEdgeError, match="threads must be a whole number of at least 1"):
            BackendOptions(threads=bad)



class _NoDetector:
    """Stands for Detector where a test shows nothing loads one (or records how it was asked for)."""

    asked: list = []

    def __init__(self, path, **kwargs) -> None:  # noqa: ANN001, ANN003
        from retina_edge.errors import RetinaEdgeError

        self.asked.append(kwargs)
        raise RetinaEdgeError("no detector in this test")


@pytest.mark.parametrize("command,said", [
    (["detect", "--source", "{root}/data/val", "--record", "{tmp}/r.mcap"],
     "--record needs the 'mcap' package, which is not installed; install it with: pip install 'retina-edge[robotics]'"),
    (["detect", "--source", "{root}/data/val", "--track", "--jsonl", "{tmp}/d.jsonl"],
     "--track needs the 'trackers' package, which is not installed; install it with: pip install 'retina-edge[track]'"),
    (["bench", "--plot", "{tmp}/b.png"], "--plot needs the 'matplotlib' package"),
])
def test_a_missing_package_is_said_before_the_model_loads_and_the_backends_are_probed(command, said, root, tmp_path,
                                                                                       monkeypatch, capsys):
    import importlib.util

    import retina_edge.runtime as runtime

    missing = {"mcap", "trackers", "matplotlib"}
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing else find_spec(name, *a))
    monkeypatch.setattr(runtime, "Detector", _NoDetector)
    _NoDetector.asked = []
    args = [part.format(root=root, tmp=tmp_path) for part in command]
    assert main([*args[:1], "--model", str(tmp_path / "m.onnx"), *args[1:]]) == 2
    assert said in capsys.readouterr().err and _NoDetector.asked == []


def test_an_openvino_precision_with_backend_auto_runs_on_openvino(root, monkeypatch, capsys):
    """auto measured ONNX Runtime too and, picking it, ignored --ov-precision bf16."""
    import retina_edge.runtime as runtime

    monkeypatch.setattr(runtime, "Detector", _NoDetector)
    _NoDetector.asked = []
    image = next((root / "data" / "val").iterdir())
    assert main(["detect", "--model", str(root / "m.onnx"), "--source", str(image), "--ov-precision", "bf16"]) == 2
    assert _NoDetector.asked[0]["backend"] == "openvino" and _NoDetector.asked[0]["options"].precision_hint == "bf16"
    assert "--ov-precision bf16 is OpenVINO's: running on OpenVINO" in capsys.readouterr().err
    assert main(["detect", "--model", str(root / "m.onnx"), "--source", str(image)]) == 2
    assert _NoDetector.asked[1]["backend"] == "auto"


def test_an_openvino_error_says_its_reason_not_where_it_was_raised(tmp_path):
    """Its text starts with source locations: the message ended at "core.cpp:117:"."""
    from retina_edge.errors import RetinaEdgeError
    from retina_edge.export.onnx_export import ExportOptions, export_onnx
    from retina_edge.preprocess import PreprocessConfig
    from retina_edge.runtime.backends.openvino_backend import OpenVinoBackend

    path = export_onnx(tiny_model(), tmp_path / "m.onnx", ExportOptions(preprocess=PreprocessConfig(64, 64)))
    with pytest.raises(RetinaEdgeError) as raised:
        OpenVinoBackend(path, threads=-1)  # OpenVINO itself refuses it
    assert str(raised.value).endswith("Wrong value for property key INFERENCE_NUM_THREADS. Expected only non negative "
                                      "integer numbers. Got: -1")


def test_a_folder_given_as_the_model_is_called_a_folder(root, tmp_path, capsys):
    """It said "model file not found" for a folder that is there."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.onnx").write_bytes(b"x")
    image = next((root / "data" / "val").iterdir())
    assert main(["detect", "--model", str(tmp_path / "models"), "--source", str(image)]) == 2
    err = capsys.readouterr().err
    assert "models is a folder; a model is one file (.onnx, or an engine retina-edge built): it holds m.onnx" in err
    assert "not found" not in err


def test_eval_gives_its_intervals_in_the_tables_scale(root, capsys):
    """The table said AP=0.5760 and the intervals beside it AP 57.60 [..] (points)."""
    import re

    assert main(["eval", "--weights", str(root / "w.pth"), "--data", str(root / "data")]) == 0
    out = capsys.readouterr().out
    table_ap = re.search(r"^AP=(\d\.\d{4})", out, flags=re.M).group(1)
    intervals = next(line for line in out.splitlines() if line.startswith("95% intervals"))
    assert f"AP={table_ap} [" in intervals
    assert all(float(v) <= 1.0 for v in re.findall(r"(\d+\.\d+)", intervals.split(":", 1)[1]))
