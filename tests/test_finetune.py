"""The two fine-tunes, QAT and pruning, start from one reading of the checkpoint's training options
(``training/finetune.py``): the same optimiser, batch and augmentation, each its own schedule, and
neither the original's architecture, input size nor frozen stages (the checkpoint fixes those)."""

from __future__ import annotations

from pathlib import Path

import pytest

from retina_edge.model.checkpoints import save_checkpoint
from retina_edge.training.finetune import checkpoint_training_options, original_config
from retina_edge.training.prune import PruneConfig, finetune_config
from retina_edge.training.qat import QatOptions
from retina_edge.training.train import TrainConfig
from tiny import tiny_model

ORIGINAL = {"optimizer": "adamw", "momentum": 0.8, "weight_decay": 0.05, "hflip": 0.25, "grad_clip": 1.0,
            "train_min_sizes": [96, 128], "batch_size": 4, "lr": 0.003, "iterations": 1000, "amp": False,
            "arch": "resnet50_fpn", "min_size": 777, "trainable_layers": 2, "eval_at_end": True}


def test_qat_and_pruning_take_the_same_options_from_the_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "m.pth", tiny_model(), train_config=ORIGINAL)
    save_checkpoint(tmp_path / "bare.pth", tiny_model())
    original = checkpoint_training_options(str(tmp_path / "m.pth"))
    assert original == ORIGINAL
    assert checkpoint_training_options(str(tmp_path / "bare.pth")) is None
    assert checkpoint_training_options("torchvision:retinanet_resnet50_fpn") is None
    assert original_config(None, "d") == TrainConfig(data="d")
    pruning = finetune_config(PruneConfig(weights=str(tmp_path / "m.pth"), data="d", iterations=30), Path("s"), Path("o"))
    qat = QatOptions(data="d", out_dir="o").train_config(original, train_images=80)
    for key in ("optimizer", "momentum", "weight_decay", "hflip", "grad_clip", "batch_size"):
        assert getattr(pruning, key) == getattr(qat, key) == ORIGINAL[key], key
    assert pruning.train_min_sizes == qat.train_min_sizes == (96, 128)
    assert (pruning.lr, pruning.iterations) == (pytest.approx(0.001), 30)  # a third of the lr, its own length
    assert (qat.lr, qat.iterations) == (pytest.approx(3e-5), 100)  # 1% of the lr, a tenth of the schedule
    defaults = TrainConfig(data="d")
    for config in (pruning, qat):
        assert (config.arch, config.min_size, config.trainable_layers) == (defaults.arch, None, defaults.trainable_layers)
        assert not config.eval_at_end


def test_pruning_fine_tunes_four_tenths_of_the_original_schedule_by_default(tmp_path):
    """Before: 150 iterations a step whatever the model (8% of the preset's schedule, which left a
    sixth of its channels 2.2 AP points down); now 40% of the original's, in epochs or iterations."""
    from retina_edge.data.synth import SynthConfig, write_dataset

    data = tmp_path / "data"
    write_dataset(data, SynthConfig(num_images=10, seed=0, min_side=64, max_side=64, max_object=40, val_fraction=0.2))
    save_checkpoint(tmp_path / "m.pth", tiny_model(), train_config=ORIGINAL)
    save_checkpoint(tmp_path / "e.pth", tiny_model(), train_config={**ORIGINAL, "iterations": 0, "epochs": 5})
    config = PruneConfig(weights=str(tmp_path / "m.pth"), data=str(data))
    assert finetune_config(config, Path("s"), Path("o")).iterations == 400
    config = PruneConfig(weights=str(tmp_path / "e.pth"), data=str(data))
    assert finetune_config(config, Path("s"), Path("o")).iterations == 4  # 5 epochs of 8 images in batches of 4, 40%
