"""Checkpoint formats: ours, bare torchvision state dicts (new and legacy key layouts), backbones."""

from __future__ import annotations

import pytest
import torch

from retina_edge.model.archs import model_config
from retina_edge.model.retinanet import build_model
from retina_edge.model.checkpoints import infer_arch, load_backbone_weights, load_model, save_checkpoint
from retina_edge.errors import WeightsError
from rx1 import rx1_state_dict


def to_legacy_layout(state_dict: dict) -> dict:
    """Key layout of torchvision < 0.13 files: conv.{2i}.* in heads, inner_blocks.{i}.* in FPN."""
    legacy = {}
    for key, value in state_dict.items():
        for block in ("inner_blocks", "layer_blocks"):
            for i in range(3):
                key = key.replace(f"fpn.{block}.{i}.0.", f"fpn.{block}.{i}.")
        for i in range(4):
            key = key.replace(f"head.conv.{i}.0.", f"head.conv.{2 * i}.")
        legacy[key] = value
    return legacy


def test_strict_load_of_legacy_v1_layout(tmp_path):
    state = rx1_state_dict("v1")
    legacy = to_legacy_layout(state)
    assert "head.classification_head.conv.6.weight" in legacy
    model = build_model("resnet50_fpn", num_classes=91, frozen_bn_eps=0.0)
    model.load_state_dict(legacy, strict=True)
    torch.testing.assert_close(model.head.classification_head.conv[3][0].weight,
                               state["head.classification_head.conv.3.0.weight"])


@pytest.mark.parametrize("variant,arch", [("v1", "resnet50_fpn"), ("v2", "resnet50_fpn_v2")])
def test_bare_state_dict_arch_is_inferred(tmp_path, variant, arch):
    state = rx1_state_dict(variant)
    assert infer_arch(state) == (arch, 91)
    path = tmp_path / "tv.pth"
    torch.save(state, path)
    model = load_model(str(path), min_size=320)
    assert model.config.arch == arch and model.config.transform.min_size == 320
    assert model.config.class_name(1) == "person"
    if variant == "v1":
        assert model.config.frozen_bn_eps == 0.0  # torchvision's v1 COCO weights


def test_our_checkpoint_round_trip(tmp_path):
    model = build_model("resnet18_fpn", num_classes=4, class_names=("a", "b", "c", "d"), fpn_channels=64)
    path = tmp_path / "ck.pth"
    save_checkpoint(path, model, epoch=7)
    loaded = load_model(str(path))
    assert loaded.config == model.config
    assert not loaded.training
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.load(path, weights_only=True)["epoch"] == 7


def test_mismatched_arch_is_a_clear_error(tmp_path):
    path = tmp_path / "v2.pth"
    torch.save(rx1_state_dict("v2"), path)
    with pytest.raises(WeightsError, match="do not fit resnet50_fpn"):
        load_model(str(path), arch="resnet50_fpn")


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_model(str(tmp_path / "missing.pth"))
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        load_model(str(broken))
    foreign = tmp_path / "foreign.pth"
    torch.save({"layer.weight": torch.zeros(3)}, foreign)
    with pytest.raises(WeightsError, match="cannot recognise"):
        load_model(str(foreign))


def test_unknown_torchvision_name_and_arch():
    with pytest.raises(WeightsError, match="retinanet_resnet50_fpn_v2"):
        load_model("torchvision:retinanet_resnet9000")
    with pytest.raises(ValueError, match="unknown arch"):
        model_config("resnet9000_fpn")


def test_offline_download_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError) as info:
        load_model("torchvision:retinanet_resnet50_fpn_v2")
    message = str(info.value)
    assert "retinanet_resnet50_fpn_v2_coco-5905b1c5.pth" in message and str(tmp_path) in message


def test_cached_torchvision_file_is_used_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(rx1_state_dict("v1"), cache / "retinanet_resnet50_fpn_coco-eeacb38b.pth")
    model = load_model("torchvision:retinanet_resnet50_fpn", score_thresh=0.3)
    assert model.config.frozen_bn_eps == 0.0 and model.config.postprocess.score_thresh == 0.3


def test_imagenet_backbone_loads_without_fc(tmp_path):
    donor = build_model("resnet18_fpn", num_classes=2).backbone.body
    imagenet = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in donor.state_dict().items()}
    imagenet["fc.weight"], imagenet["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    path = tmp_path / "resnet18.pth"
    torch.save(imagenet, path)
    model = build_model("resnet18_fpn", num_classes=2)
    load_backbone_weights(model, str(path))
    torch.testing.assert_close(model.backbone.body.layer3[0].conv1.weight, imagenet["layer3.0.conv1.weight"])
