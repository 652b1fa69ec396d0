"""End to end on generated data: synth -> train (also DDP under torchrun) -> eval, and their failure modes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from retina_edge.model.checkpoints import load_model, save_checkpoint
from retina_edge.cli.main import main

TINY = ["--arch", "resnet18_fpn", "--imgsz", "128", "--batch-size", "2", "--workers", "0",
        "--model-options", json.dumps({"backbone_width": 16, "fpn_channels": 32, "head_convs": 1,
                                       "anchor_sizes": [16, 32, 64, 128, 256]})]


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    assert main(["synth", "--out", str(out), "--images", "10", "--seed", "1"]) == 0
    return out


@pytest.fixture(scope="module")
def trained(synth_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--data", str(synth_dir), "--out", str(out), "--iterations", "4", *TINY]) == 0
    return out


def test_train_writes_checkpoints_and_metrics(trained):
    model = load_model(str(trained / "model_final.pth"))
    assert model.config.class_names[0] == "ellipse" and model.config.category_ids[0] == 1
    assert model.config.transform.min_size == 128 and model.config.backbone_width == 16
    assert "AP" in json.loads((trained / "metrics.json").read_text())["summary"]
    state = torch.load(trained / "last.pth", weights_only=True)
    assert state["iteration"] == 4 and "optimizer" in state


def test_resume_continues_from_last(synth_dir, trained, tmp_path):
    shutil.copytree(trained, tmp_path / "run")
    assert main(["train", "--data", str(synth_dir), "--out", str(tmp_path / "run"), "--iterations", "6",
                 "--no-eval", "--resume", *TINY]) == 0
    assert torch.load(tmp_path / "run" / "last.pth", weights_only=True)["iteration"] == 6


def test_amp_and_half_weights_final_eval_scores_the_stored_file(synth_dir, tmp_path, monkeypatch):
    import retina_edge.training.train

    evaluated = []
    monkeypatch.setattr(retina_edge.training.train, "_evaluate_val", lambda model, *args: evaluated.append(model))
    out = tmp_path / "run"
    assert main(["train", "--data", str(synth_dir), "--out", str(out), "--iterations", "3", "--amp", "--half-weights",
                 *TINY]) == 0
    name = "head.classification_head.cls_logits.weight"
    stored = torch.load(out / "model_final.pth", weights_only=True)["model"][name]
    full = torch.load(out / "last.pth", weights_only=True)["model"][name]
    assert stored.dtype == torch.float16 and full.dtype == torch.float32
    assert not torch.equal(stored.float(), full)  # the rounding is visible, so the check below can fail
    assert torch.equal(evaluated[0].state_dict()[name], stored.float())


def test_eval_equals_pycocotools_on_saved_json(synth_dir, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    results, metrics = tmp_path / "results.json", tmp_path / "metrics.json"
    assert main(["eval", "--weights", "preset:synth", "--data", str(synth_dir),
                 "--save-json", str(results), "--metrics-json", str(metrics)]) == 0
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(synth_dir / "annotations" / "instances_val.json"))
        evaluator = COCOeval(gt, gt.loadRes(str(results)), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    ours = json.loads(metrics.read_text())["summary"]
    assert ours["AP"] > 0.2  # a trained model: the comparison below is not between zeros
    assert [ours[k] for k in ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L")] == pytest.approx(
        evaluator.stats[:6].tolist(), abs=1e-12)
    intervals = json.loads(metrics.read_text())["ci95_points"]
    for name in ("AP", "AP50", "AP75"):
        low, high = intervals[name]
        # a bootstrap interval around the point, in points (a percentile bound may sit on the point
        # where few images decide it, e.g. AP50 near its maximum on a small set)
        assert low <= 100 * ours[name] <= high and low < high


def test_crash_during_checkpoint_write_keeps_last_good(trained, tmp_path, monkeypatch):
    target = tmp_path / "last.pth"
    shutil.copy(trained / "last.pth", target)
    good = target.read_bytes()
    model = load_model(str(trained / "model_final.pth"))
    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        with open(f, "r+b") as handle:  # half-written file, then the process is "killed"
            handle.truncate(1000)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(target, model, iteration=99)
    assert target.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]  # no temp file left behind


def test_killed_training_process_leaves_a_loadable_checkpoint(synth_dir, tmp_path):
    """SIGKILL at random moments of a real run: last.pth is always the old or the new one, whole."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "retina_edge.cli.main", "train", "--data", str(synth_dir), "--out", str(out),
           "--epochs", "50", "--no-eval", *TINY]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = 60
        while deadline and not (out / "last.pth").exists():
            subprocess.run(["sleep", "0.5"])
            deadline -= 0.5
        subprocess.run(["sleep", "1.3"])
    finally:
        proc.kill()
        proc.wait()
    assert (out / "last.pth").exists()
    assert torch.load(out / "last.pth", weights_only=True)["iteration"] > 0


def test_torchrun_two_processes_gloo(synth_dir, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         "-m", "retina_edge.cli.main", "train", "--data", str(synth_dir), "--out", str(out),
         "--iterations", "2", "--no-eval", *TINY],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    model = load_model(str(out / "model_final.pth"))
    assert model.config.num_classes == 6


def test_fine_tuning_refuses_an_arch_its_checkpoint_contradicts(synth_dir, trained, tmp_path, capsys):
    """``--weights`` fixes the architecture: ``--arch`` naming another is refused in one line, not ignored."""
    argv = ["train", "--data", str(synth_dir), "--weights", str(trained / "model_final.pth"), "--iterations", "1",
            "--workers", "0", "--no-eval", "--out", str(tmp_path / "t")]
    assert main([*argv, "--arch", "resnet50_fpn"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "resnet50_fpn contradicts" in errors[0] and "resnet18_fpn checkpoint" in errors[0], errors
    assert not (tmp_path / "t" / "model_final.pth").exists()
    assert main([*argv, "--arch", "resnet18_fpn"]) == 0  # its own: agrees


def test_train_without_data_is_a_message(capsys):
    assert main(["train", "--iterations", "1"]) == 2
    assert "--data" in capsys.readouterr().err


def test_shipped_preset_reaches_its_targets_on_its_val_split(tmp_path):
    """The bar ``preset:synth`` was shipped against: COCO AP >= 0.55, AP50 >= 0.85 on its own val split."""
    from retina_edge.presets import PRESET_SYNTH_DATA
    from retina_edge.data.synth import write_dataset

    write_dataset(tmp_path / "data", PRESET_SYNTH_DATA)
    metrics = tmp_path / "metrics.json"
    assert main(["eval", "--weights", "preset:synth", "--data", str(tmp_path / "data"),
                 "--metrics-json", str(metrics)]) == 0
    summary = json.loads(metrics.read_text())["summary"]
    assert summary["AP"] >= 0.55 and summary["AP50"] >= 0.85, summary


def test_flags_override_the_config_file_both_ways():
    from retina_edge.cli.main import build_parser
    from retina_edge.cli.train import config_from_args
    from retina_edge.presets import PRESET_DIR

    preset = str(PRESET_DIR / "synth_train.json")
    parse = build_parser().parse_args
    assert config_from_args(parse(["train", "--config", preset, "--data", "d"])).amp is True
    config = config_from_args(parse(["train", "--config", preset, "--data", "d", "--no-amp", "--no-half-weights"]))
    assert config.amp is False and config.half_weights is False and config.iterations == 1850


def test_train_names_its_output_folder_before_it_starts(synth_dir, tmp_path, monkeypatch, capsys):
    """The folder showed only at the end ("checkpoint: ..."), so an interrupted or long run hid where it wrote."""
    import retina_edge.training.train

    said = []
    monkeypatch.setattr(retina_edge.training.train, "_loop", lambda run: said.append(capsys.readouterr().err))
    out = tmp_path / "run"
    assert main(["train", "--data", str(synth_dir), "--out", str(out), "--iterations", "2", "--no-eval", *TINY]) == 0
    assert f"training 2 iterations into {out} (last.pth on the way and on Ctrl-C" in said[0]
