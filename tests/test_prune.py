"""Structured pruning: the channel groups Torch-Pruning's DepGraph finds in the RetinaNet, the widths
record that makes a pruned checkpoint an ordinary model (built, saved, loaded in a fresh process,
exported, run by ONNX Runtime with the reference's detections), its refusal when damaged, the cost
counts against the exported graph's, and the ``prune`` command's schedule, report and resume."""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from retina_edge.cli.main import main
from retina_edge.config import LayerWidths, ModelConfig
from retina_edge.data.synth import CLASSES, SynthConfig, write_dataset
from retina_edge.errors import ConfigError, RetinaEdgeError
from retina_edge.export.onnx_export import ExportOptions, export_onnx
from retina_edge.metrics.matching import match_detections
from retina_edge.model.retinanet import build_model
from retina_edge.model.checkpoints import load_model, save_checkpoint
from retina_edge.model.preprocess_torch import preprocess_tensor_batch
from retina_edge.model.pruning import PruneOptions, amount_for_macs, kept_channels, prune_model
from retina_edge.model.reference import reference_on_inputs
from retina_edge.model.measure import model_cost
from retina_edge.preprocess import PreprocessConfig, boxes_to_source
from retina_edge.quality.verify import check_same_model
from retina_edge.runtime import Detector
from tiny import tiny_model

pytest.importorskip("torch_pruning")

PREPROCESS = PreprocessConfig(128, 160, align="center")


@pytest.fixture(scope="module")
def pruned():
    """The tiny model (v1: frozen BatchNorm, stem 16, FPN 32, one head conv) with half its channels."""
    model = tiny_model()
    prune_model(model, PruneOptions(0.5))
    return model.eval()


def test_kept_channels_round_to_the_step_and_keep_small_groups_whole():
    assert kept_channels(64, 0.3, 8) == 48  # 44.8 -> the nearest multiple of 8
    assert kept_channels(256, 0.5, 8) == 128 and kept_channels(32, 0.9, 8) == 8  # never below one step
    assert kept_channels(8, 0.5, 8) == 8 and kept_channels(64, 0.0, 8) == 64


def test_groups_prune_residual_stages_fpn_and_shared_head_together(pruned):
    model = pruned
    body, fpn, head = model.backbone.body, model.backbone.fpn, model.head
    # a basic-block stage without a shortcut conv shares its channels with the stem (frozen, and pruned all the same)
    assert body.conv1.out_channels == body.layer1[0].conv2.out_channels == body.layer1[1].conv2.out_channels == 8
    assert body.bn1.weight.shape[0] == 8 and body.layer2[0].conv1.in_channels == body.layer2[0].downsample[0].in_channels == 8
    for stage, lateral in zip((body.layer2, body.layer3, body.layer4), fpn.inner_blocks):  # a stage and its reader
        assert stage[0].conv2.out_channels == stage[0].downsample[0].out_channels == stage[1].conv2.out_channels
        assert lateral[0].in_channels == stage[1].conv2.out_channels
    # P3..P7 feed one head: every FPN output conv and both towers' first conv move together
    outputs = {block[0].out_channels for block in fpn.layer_blocks} | {fpn.extra_blocks.p6.out_channels,
                                                                        fpn.extra_blocks.p7.out_channels}
    assert outputs == {16} and fpn.extra_blocks.p7.in_channels == 16
    assert head.classification_head.conv[0][0].in_channels == head.regression_head.conv[0][0].in_channels == 16
    # the output convs keep anchors x classes and anchors x 4
    assert head.classification_head.cls_logits.out_channels == 9 * 3 and head.regression_head.bbox_reg.out_channels == 36
    outputs, _ = model.head_outputs(torch.rand(1, 3, 128, 160))
    assert outputs["cls_logits"].shape == (1, sum(h * w for h, w in ((16, 20), (8, 10), (4, 5), (2, 3), (1, 2))) * 9, 3)


def test_groupnorm_loses_whole_groups_and_the_kept_ones_normalise_as_before():
    torch.manual_seed(0)
    model = build_model("resnet18_fpn_v2", num_classes=3, backbone_width=16, fpn_channels=64, head_convs=1).eval()
    norm = copy.deepcopy(model.head.classification_head.conv[0][1])  # GroupNorm(32, 64): 2 channels a group
    with torch.no_grad():
        norm.weight.normal_(), norm.bias.normal_()
        model.head.classification_head.conv[0][1].load_state_dict(norm.state_dict())
    prune_model(model, PruneOptions(0.25))
    pruned = model.head.classification_head.conv[0][1]
    assert (pruned.num_channels, pruned.num_groups) == (48, 24)
    kept = [i for i in range(64) if torch.any(norm.weight[i] == pruned.weight)]  # the weights name the kept channels
    assert len(kept) == 48 and all(kept[i] // 2 == kept[i + 1] // 2 for i in range(0, 48, 2))
    x = torch.randn(2, 64, 5, 6)
    torch.testing.assert_close(pruned(x[:, kept]), norm(x)[:, kept])  # torch's own GroupNorm on the full width


def test_widths_record_round_trips_and_an_unpruned_config_reads_as_before(pruned):
    config = pruned.config
    assert config.widths and str(config.widths).startswith("pruned (")
    data = json.loads(json.dumps(config.to_dict()))
    assert ModelConfig.from_dict(data) == config
    assert config.widths.get("backbone.body.conv1") == (8, 3)
    assert "widths" not in tiny_model().config.to_dict()  # unpruned: the dict an older retina-edge reads


@pytest.mark.parametrize("record, message", [
    ("garbage", "a str, not a mapping"),
    ({"backbone.body.conv1": [8, -3]}, "not one or two whole numbers"),
    ({"backbone.body.conv1": [8, 3, 3]}, "not one or two whole numbers"),
    ({"backbone.body.conv1": [True]}, "not one or two whole numbers"),
])
def test_a_malformed_widths_record_is_refused(record, message):
    data = tiny_model().config.to_dict()
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_dict({**data, "widths": record}, source="m.pth")


@pytest.fixture(scope="module")
def saved(pruned, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pruned")
    save_checkpoint(folder / "pruned.pth", pruned)
    return pruned, folder / "pruned.pth"


@pytest.mark.parametrize("damage, message", [
    (lambda w: w.update({"backbone.body.conv1": [16, 3]}), r"backbone.body.conv1 has channels \[16, 3\] in the record but \[8, 3\]"),
    (lambda w: w.update({"backbone.body.nothing": [8, 3]}), "backbone.body.nothing is no layer of resnet18_fpn"),
    (lambda w: w.update({"backbone.body.conv1": [8]}), "has 1 numbers; its kind records 2"),
    (lambda w: w.update({"backbone.body.conv1": [8, 64]}), r"wider than the architecture \(in 64 > 3\)"),
])
def test_a_damaged_widths_record_is_refused_on_one_line(saved, tmp_path, capsys, damage, message):
    data = torch.load(saved[1], weights_only=True)
    damage(data["config"]["widths"])
    torch.save(data, tmp_path / "damaged.pth")
    assert main(["inspect", "--weights", str(tmp_path / "damaged.pth")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "damaged widths record" in err
    assert __import__("re").search(message, err), err


def test_pruned_checkpoint_loads_in_a_fresh_process(saved, tmp_path):
    model, path = saved
    torch.manual_seed(1)
    batch = torch.rand(1, 3, 128, 160)
    torch.save(batch, tmp_path / "batch.pt")
    code = ("import sys, torch; from retina_edge.model.checkpoints import load_model; m = load_model(sys.argv[1]); "
            "o, _ = m.head_outputs(torch.load(sys.argv[2])); torch.save(o['cls_logits'], sys.argv[3])")
    subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "batch.pt"), str(tmp_path / "out.pt")], check=True)
    with torch.no_grad():
        expected, _ = model.head_outputs(batch)
    assert torch.equal(torch.load(tmp_path / "out.pt"), expected["cls_logits"])


def test_pruned_checkpoint_exports_and_onnxruntime_gives_the_reference_detections(saved, tmp_path):
    _, path = saved
    model = load_model(str(path))
    graph = export_onnx(model, tmp_path / "pruned.onnx", ExportOptions(preprocess=PREPROCESS, tail="decode", batch=(1, 2, 3)))
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, size=s, dtype=np.uint8) for s in [(100, 200, 3), (240, 120, 3), (128, 160, 3), (300, 301, 3)]]
    detector = Detector(graph, backend="onnxruntime")
    assert detector.metadata.model.widths == model.config.widths  # the contract carries the record
    batch, infos = preprocess_tensor_batch(images, PREPROCESS)
    matched = total = 0
    for reference, info, got in zip(reference_on_inputs(model, batch), infos, detector.detect(images)):
        expected = (boxes_to_source(reference["boxes"].numpy(), info), reference["scores"].numpy(), reference["labels"].numpy())
        result = match_detections(expected, (got.boxes, got.scores, got.labels))
        matched, total = matched + result.matched, total + result.num_reference
    assert total > 20 and matched / total >= 0.99


def test_costs_count_what_the_exported_graph_computes(saved, tmp_path, monkeypatch):
    """MACs from PyTorch's FLOP counter equal the exported graph's convolutions counted from ONNX."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))
    from cpu_ceiling import conv_macs

    model, _ = saved
    graph = export_onnx(model, tmp_path / "m.onnx", ExportOptions(preprocess=PreprocessConfig(128, 128), tail="none"))
    cost = model_cost(model.config, (128, 128))
    assert cost.macs == conv_macs(graph, 128)
    assert cost.params == sum(p.numel() for p in model.parameters())
    unpruned = model_cost(tiny_model().config, (128, 128))
    assert 0.2 < cost.macs / unpruned.macs < 0.4  # half the channels in and out: about a quarter of the MACs


def test_a_macs_target_finds_the_smallest_amount_that_meets_it():
    model = tiny_model()
    amount = amount_for_macs(model, 0.5, PruneOptions(0.0))
    unpruned = model_cost(model.config).macs

    def macs_ratio(value: float) -> float:
        trial = copy.deepcopy(model)
        prune_model(trial, PruneOptions(value))
        return model_cost(trial.config).macs / unpruned

    assert macs_ratio(amount) <= 0.5 < macs_ratio(amount - 0.002)


def test_verify_refuses_to_compare_a_pruned_graph_with_unpruned_weights(saved):
    with pytest.raises(RetinaEdgeError, match="architectures differ.*widths pruned \\(.* vs unpruned"):
        check_same_model(saved[0].config, tiny_model().config, "pruned.onnx", "tiny.pth")


@pytest.fixture(scope="module")
def run_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("prune-run")
    write_dataset(root / "data", SynthConfig(num_images=10, seed=7, min_side=96, max_side=128))
    save_checkpoint(root / "tiny.pth", tiny_model(class_names=CLASSES, min_size=128, max_size=128))
    return root


def prune_cli(root: Path, out: Path, *extra: str) -> int:
    finetune = json.dumps({"batch_size": 2, "workers": 0, "optimizer": "adamw", "lr": 1e-3})
    return main(["prune", "--weights", str(root / "tiny.pth"), "--data", str(root / "data"), "--amount", "0.5",
                 "--steps", "2", "--iterations", "2", "--finetune", finetune, "--latency-iters", "2", "--out", str(out),
                 *extra])


def test_prune_command_schedule_report_interrupt_and_resume(run_data, tmp_path, monkeypatch, capsys):
    from retina_edge.progress import Progress

    update = Progress.update
    step2 = []

    def interrupt_in_step2(self, done, **fields):  # noqa: ANN001, ANN003
        update(self, done, **fields)
        if self.label == "train" and (tmp_path / "run" / "step2" / "pruned.pth").is_file() and not step2:
            step2.append(done)
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(Progress, "update", interrupt_in_step2)
    assert prune_cli(run_data, tmp_path / "run") == 130
    assert "--resume" in capsys.readouterr().err
    first_step = (tmp_path / "run" / "step1" / "model_final.pth").stat().st_mtime_ns
    assert prune_cli(run_data, tmp_path / "run") == 2  # a used folder is not overwritten
    assert "already holds a pruning run" in capsys.readouterr().err
    assert prune_cli(run_data, tmp_path / "run", "--resume") == 0
    assert (tmp_path / "run" / "step1" / "model_final.pth").stat().st_mtime_ns == first_step  # step 1 was not redone
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "run" / "report.json").read_text())["steps"]
    assert [r["amount"] for r in rows] == [0.0, 0.25, 0.5] and "| 2 | 0.500 |" in out
    assert rows[0]["macs"] > rows[1]["macs"] > rows[2]["macs"] and rows[2]["params_ratio"] < 0.5
    assert all(r["latency_ratio"] > 0 and r["ap"] is not None for r in rows) and rows[2]["delta_ap"] is not None
    pruned = load_model(str(tmp_path / "run" / "pruned.pth"))
    assert pruned.config.widths and pruned.backbone.fpn.layer_blocks[0][0].out_channels == 16


def test_a_run_refused_at_the_start_leaves_its_folder_to_the_corrected_command(run_data, tmp_path, capsys):
    """Bad weights, data, classes or MACs target are refused before the folder is claimed (prune.json)."""
    save_checkpoint(tmp_path / "abc.pth", tiny_model(class_names=("a", "b", "c"), min_size=128, max_size=128))
    out = tmp_path / "run"
    good = {"--weights": str(run_data / "tiny.pth"), "--data": str(run_data / "data"), "--amount": "0.5"}
    for flag, value, message in [("--weights", str(tmp_path / "nope.pth"), "not found"),
                                 ("--data", str(tmp_path / "nodata"), "not found"),
                                 ("--weights", str(tmp_path / "abc.pth"), "are not the data's"),
                                 ("--target-macs", "0.001", "even pruning 95%")]:
        options = {**good, flag: value}
        if flag == "--target-macs":
            del options["--amount"]
        argv = [item for pair in options.items() for item in pair]
        assert main(["prune", *argv, "--steps", "1", "--iterations", "1", "--no-latency", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not (out / "prune.json").exists()
    argv = [item for pair in good.items() for item in pair]
    assert main(["prune", *argv, "--steps", "1", "--iterations", "0", "--no-latency", "--out", str(out)]) == 0
    assert load_model(str(out / "pruned.pth")).config.widths


def test_the_report_calls_a_dap_on_too_few_val_images_unresolved():
    """Below MIN_IMAGES val images a bootstrap interval is no evidence (as build and verify say)."""
    from retina_edge.metrics.bootstrap import MIN_IMAGES
    from retina_edge.training.prune import StepRow, report_table

    def rows(images: int) -> list:
        return [StepRow(0, 0.0, 100, 10, 1.0, 1.0, ap=30.0, images=images),
                StepRow(1, 0.5, 40, 4, 0.4, 0.4, ap=29.0, delta_ap=[-1.0, -2.5, 0.25], images=images)]

    few, enough = report_table(rows(MIN_IMAGES - 1)), report_table(rows(MIN_IMAGES))
    assert f"| -1.00 (unresolved: {MIN_IMAGES - 1} < {MIN_IMAGES} images) |" in few and "[-2.50, +0.25]" not in few
    assert f"val AP on {MIN_IMAGES - 1} images. Fewer than {MIN_IMAGES}" in few and "each dAP is unresolved" in few
    assert "| -1.00 [-2.50, +0.25] |" in enough and "unresolved" not in enough


def test_pruned_checkpoint_builds_an_int8_graph_for_cpus(saved, run_data, tmp_path):
    out = tmp_path / "pruned-int8.onnx"
    assert main(["build", "--int8", "--target", "cpu", "--weights", str(saved[1]), "--imgsz", "128", "--calib",
                 str(run_data / "data" / "train"), "--calib-count", "4", "-o", str(out)]) == 0
    detector = Detector(out, backend="onnxruntime")
    assert detector.metadata.precision == "int8" and detector.metadata.model.widths == saved[0].config.widths
    assert len(detector.detect([np.zeros((100, 120, 3), np.uint8)])) == 1


def test_fine_tuning_refuses_data_with_other_classes(run_data, tmp_path, capsys):
    save_checkpoint(tmp_path / "abc.pth", tiny_model(class_names=("a", "b", "c"), min_size=128, max_size=128))
    assert main(["train", "--weights", str(tmp_path / "abc.pth"), "--data", str(run_data / "data"), "--iterations", "1",
                 "--workers", "0", "--out", str(tmp_path / "t")]) == 2
    assert "detects a, b, c; the dataset has ellipse" in capsys.readouterr().err


def test_prune_options_refuse_nonsense():
    with pytest.raises(ConfigError, match="amount must be in"):
        PruneOptions(1.0)
    assert main(["prune", "--weights", "preset:synth", "--data", "x", "--amount", "0.3", "--target-macs", "0.5"]) == 2
    with pytest.raises(ConfigError, match="whole groups"):
        from retina_edge.model import pruning

        pruners = pruning._layer_pruners(__import__("torch_pruning"))
        pruners[nn.GroupNorm].prune_out_channels(nn.GroupNorm(4, 8), [0, 3])
    assert LayerWidths() == LayerWidths(()) and not LayerWidths()
