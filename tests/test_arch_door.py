"""The architecture door: a ResNet-10 (one basic block per stage, as in timm's resnet10t family)
defined here, in tests/, registered as a backbone builder and an architecture without touching the
library, is built, trained a step, exported, run by the runtime and listed by ``retina-edge archs``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retina_edge.cli.main import main
from retina_edge.errors import ConfigError
from retina_edge.export.onnx_export import ExportOptions, export_onnx
from retina_edge.model.archs import ARCHS, Arch, register_arch, unregister_arch
from retina_edge.model.retinanet import build_model
from retina_edge.model.backbone import ResNetBody, freeze_stages
from retina_edge.model.checkpoints import load_model, save_checkpoint
from retina_edge.model.registry import BACKBONES
from retina_edge.preprocess import PreprocessConfig, preprocess_batch
from retina_edge.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

NAME = "resnet10_fpn"


def build_resnet10(config, norm):  # noqa: ANN001, ANN201
    body = ResNetBody(depth=10, norm=norm, width=config.backbone_width, layout=("basic", (1, 1, 1, 1)))
    freeze_stages(body, config.trainable_layers)
    return body


@pytest.fixture
def resnet10():
    BACKBONES.register("resnet10", build_resnet10)
    register_arch(Arch(NAME, depth=10, variant="v1", backbone="resnet10",
                       defaults={"backbone_width": 16, "fpn_channels": 32, "head_convs": 1},
                       description="ResNet-10 FPN (one basic block per stage)"))
    yield NAME
    unregister_arch(NAME)
    BACKBONES.unregister("resnet10")


def test_a_registered_arch_builds_trains_exports_and_runs(resnet10, tmp_path):
    torch.manual_seed(0)
    model = build_model(NAME, num_classes=3, class_names=("a", "b", "c"), trainable_layers=5)
    assert len(model.backbone.body.layer3) == 1 and model.config.norm == "frozen_bn" and model.config.fpn_channels == 32
    images = [torch.rand(3, 96, 128)]
    losses = model.train()(images, [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([1])}])
    sum(losses.values()).backward()
    assert model.backbone.body.layer1[0].conv1.weight.grad is not None
    model.eval()
    save_checkpoint(tmp_path / "w.pth", model)
    reloaded = load_model(str(tmp_path / "w.pth"))
    assert reloaded.config.arch == NAME
    preprocess = PreprocessConfig(96, 128)
    path = export_onnx(reloaded, tmp_path / "m.onnx", ExportOptions(preprocess=preprocess, tail="none"))
    batch = preprocess_batch([np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)], preprocess)[0]
    got = OnnxRuntimeBackend(path).run(batch)
    with torch.no_grad():
        want, _ = model.head_outputs(torch.from_numpy(batch))
    for name in ("cls_logits", "bbox_regression"):
        np.testing.assert_allclose(got[name], want[name].numpy(), atol=1e-4)


def test_archs_lists_it_and_names_collide(resnet10, capsys):
    assert main(["archs"]) == 0
    assert NAME in capsys.readouterr().out and NAME in ARCHS
    with pytest.raises(ConfigError, match="already registered"):
        register_arch(Arch(NAME, depth=10))
    with pytest.raises(ConfigError, match="unknown backbone 'nope'"):
        build_model_with_missing_backbone()


def build_model_with_missing_backbone():  # noqa: ANN201
    register_arch(Arch("broken_fpn", depth=18, backbone="nope"))
    try:
        return build_model("broken_fpn", num_classes=2)
    finally:
        unregister_arch("broken_fpn")
