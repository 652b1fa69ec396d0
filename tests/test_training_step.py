"""Train mode: loss dict, frozen stages, and a few SGD steps that lower the loss."""

from __future__ import annotations

import pytest
import torch

from retina_edge.model.retinanet import build_model


def tiny_model(**kwargs):
    torch.manual_seed(0)
    options = dict(min_size=128, max_size=128, fpn_channels=64, trainable_backbone_layers=5, norm="bn")
    options.update(kwargs)
    return build_model("resnet18_fpn", num_classes=3, **options)


def tiny_batch():
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 128, 128, generator=g) * 0.2 for _ in range(2)]
    targets = []
    for image, (x, y, size, label) in zip(images, [(20, 30, 50, 0), (60, 10, 40, 2)]):
        image[:, y : y + size, x : x + size] = torch.tensor([0.9, 0.1, 0.1])[:, None, None] * (label + 1) / 3
        targets.append({"boxes": torch.tensor([[x, y, x + size, y + size]], dtype=torch.float32),
                        "labels": torch.tensor([label])})
    return images, targets


@pytest.mark.parametrize("arch", ["resnet18_fpn", "resnet18_fpn_v2"])
def test_optimiser_steps_lower_the_loss(arch):
    model = tiny_model() if arch == "resnet18_fpn" else build_model(
        arch, num_classes=3, min_size=128, max_size=128, fpn_channels=64, trainable_backbone_layers=5)
    model.train()
    images, targets = tiny_batch()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-4)
    losses = []
    for _ in range(12):
        loss_dict = model(images, targets)
        assert set(loss_dict) == {"classification", "bbox_regression"}
        loss = sum(loss_dict.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_frozen_stages_get_no_gradient():
    model = tiny_model(trainable_backbone_layers=2)
    model.train()
    images, targets = tiny_batch()
    sum(model(images, targets).values()).backward()
    body = model.backbone.body
    assert body.conv1.weight.grad is None and not body.conv1.weight.requires_grad
    assert all(p.grad is None for p in body.layer2.parameters())
    assert all(p.grad is not None for p in body.layer4.parameters())
    assert model.head.classification_head.cls_logits.weight.grad is not None


@pytest.mark.parametrize("layers,trainable", [(0, []), (1, ["layer4"]), (5, ["conv1", "bn1", "layer1", "layer4"])])
def test_trainable_layers_rule(layers, trainable):
    body = tiny_model(trainable_backbone_layers=layers).backbone.body
    names = {n.split(".")[0] for n, p in body.named_parameters() if p.requires_grad}
    assert names >= set(trainable)
    if layers == 0:
        assert names == set()


def test_training_requires_targets():
    model = tiny_model().train()
    with pytest.raises(ValueError, match="targets"):
        model([torch.rand(3, 64, 64)])


def test_head_init_follows_the_paper():
    model = tiny_model()
    bias = model.head.classification_head.cls_logits.bias
    torch.testing.assert_close(torch.sigmoid(bias), torch.full_like(bias, 0.01))
    assert model.head.regression_head.bbox_reg.weight.std().item() == pytest.approx(0.01, rel=0.1)


def test_bfloat16_autocast_trains_with_float32_losses():
    """CPU mixed precision (``train --amp``): convs run in bfloat16, losses and weights stay float32."""
    model = tiny_model().train()
    images, targets = tiny_batch()
    with torch.no_grad():
        reference = sum(model(images, targets).values()).item()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-4)
    losses = []
    for _ in range(12):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss_dict = model(images, targets)
        assert all(value.dtype == torch.float32 for value in loss_dict.values())
        loss = sum(loss_dict.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(reference, rel=0.05)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert losses[-1] < 0.7 * losses[0], losses


def test_amp_dtype_per_device_and_a_warning_where_bfloat16_is_emulated(monkeypatch):
    import retina_edge.training.train as train_module

    config = train_module.TrainConfig(data="unused", amp=True)
    assert train_module._autocast_dtype(config, torch.device("cuda")) == torch.float16
    monkeypatch.setattr(train_module, "_cpu_has_native_bfloat16", lambda: False)
    with pytest.warns(UserWarning, match="AVX512-BF16 nor AMX"):
        assert train_module._autocast_dtype(config, torch.device("cpu")) == torch.bfloat16
    no_amp = train_module.TrainConfig(data="unused", amp=False)
    assert train_module._autocast_dtype(no_amp, torch.device("cpu")) is None
