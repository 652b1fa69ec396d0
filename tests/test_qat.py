"""Quantization-aware training (issue 39): fake quantization where the INT8 recipe's graph quantizes,
and a QAT graph that is the PTQ graph's kind, node for node.

- the sites read back from each recipe's graph are the placement's own (TensorRT: the plan of
  ``plan_tensorrt_qdq``; CPU: ONNX Runtime's uint8 pairs);
- with fake quantization attached, the PyTorch model computes what the PTQ graph computes on ONNX
  Runtime (and not what the FP32 model computes), for each target, on the BatchNorm-folded v1
  layout (convs the simplifier renames after their norm) and the GroupNorm v2 head;
- BatchNorm folding keeps the INT8 weight codes: the exported graph's codes equal the fake-quant
  codes of the trained model, negative BN scales included;
- ``retina-edge qat`` end to end for each target: the Q/DQ positions of its graph equal the PTQ
  graph's, the contract is ``build --int8``'s, and it runs on ONNX Runtime and OpenVINO; a finished
  run resumes to the same graph, and refuses a resume with other flags; the dry run writes nothing
  and says the schedule.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from retina_edge.calib.precision import excluded_nodes, quantize_for_cpu
from retina_edge.calib.qat import attach_fake_quant, node_site
from retina_edge.calib.qat_sites import QuantSites, read_quant_sites
from retina_edge.calib.statistics import compute_stats
from retina_edge.calib.tensorrt_qdq import plan_tensorrt_qdq, quantize_for_tensorrt
from retina_edge.errors import RetinaEdgeError
from retina_edge.export.onnx_export import ExportOptions, export_onnx
from retina_edge.model.retinanet import build_model
from retina_edge.preprocess import PreprocessConfig

LAYOUTS = {
    "r18-v1-frozen-bn": ("resnet18_fpn", {"backbone_width": 16, "fpn_channels": 32, "head_convs": 1}),
    "r18-v2-gn": ("resnet18_fpn_v2", {"backbone_width": 16, "fpn_channels": 64, "head_convs": 1}),
}
QUANTIZE = {"tensorrt": quantize_for_tensorrt, "cpu": quantize_for_cpu}
BACKENDS = {"tensorrt": "modelopt", "cpu": "torch"}
SIZE = (64, 96)


def batch(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 3, *SIZE)).astype(np.float32)


@pytest.fixture(scope="module", params=list(LAYOUTS))
def layout(request, tmp_path_factory):
    """(model, FP32 graph with raw outputs, statistics) of one layout."""
    arch, options = LAYOUTS[request.param]
    torch.manual_seed(0)
    model = build_model(arch, num_classes=3, **options).eval()
    folder = tmp_path_factory.mktemp(request.param)
    graph = export_onnx(model, folder / "fp32.onnx", ExportOptions(preprocess=PreprocessConfig(*SIZE), tail="none"))
    return model, graph, compute_stats(graph, iter([batch(seed) for seed in range(3)]), method="max")


@pytest.mark.parametrize("target", list(QUANTIZE))
def test_fake_quant_model_computes_the_ptq_graph(layout, target, tmp_path):
    model, graph, stats = layout
    ptq = QUANTIZE[target](graph, stats, tmp_path / "ptq.onnx", exclude=excluded_nodes(graph, keep_predictors=False))
    sites = read_quant_sites(ptq)
    if target == "tensorrt":  # the sites are the placement's own plan
        plan = plan_tensorrt_qdq(onnx.load(str(graph), load_external_data=False).graph, exclude=[])
        assert set(sites.activations) == set(plan.activations)
        assert sites.weights == {conv for conv, _weight in plan.weights}
    else:  # ONNX Runtime's: uint8 activations with zero points
        assert {(a.qmin, a.qmax) for a in sites.activations.values()} == {(0, 255)}
        assert any(a.zero_point for a in sites.activations.values())
    x = batch(7)
    expected = ort.InferenceSession(str(ptq), providers=["CPUExecutionProvider"]).run(None, {"images": x})
    with torch.no_grad():
        fp32 = [t.numpy() for t in model.head_outputs(torch.from_numpy(x))[0].values()]
        fake = attach_fake_quant(model, sites, BACKENDS[target], torch.from_numpy(batch(0)))
        try:
            qat = [t.numpy() for t in model.head_outputs(torch.from_numpy(x))[0].values()]
        finally:
            fake.remove()
        again = [t.numpy() for t in model.head_outputs(torch.from_numpy(x))[0].values()]
    assert len(fake.activation_keys) == len(sites.activations) and len(fake.weight_modules) >= 20
    for mine, reference, float_output, plain in zip(qat, expected, fp32, again):
        # Mean differences: a CPU graph's outputs are quantized too, where one rounding that float
        # arithmetic tips the other way is a whole step.
        quantization_error = np.abs(float_output - reference).mean()
        assert quantization_error > 1e-4  # what quantization changes: far above float noise
        assert np.abs(mine - reference).mean() < 0.01 * quantization_error
        np.testing.assert_array_equal(plain, float_output)  # removed: the plain model again


def test_quantizers_follow_the_model_to_the_batchs_device(layout, tmp_path, monkeypatch):
    """``train`` moves the model to its device (CUDA where there is one), but the quantizers are no
    part of the model: they must follow the batch there, or the CUDA kernel is handed CPU scales.
    ``meta`` stands in for CUDA; it has no fake-quant kernel, so the ops are replaced by ones that
    record the devices they are given."""
    import copy

    model, graph, stats = layout
    model = copy.deepcopy(model)
    ptq = quantize_for_cpu(graph, stats, tmp_path / "ptq.onnx", exclude=excluded_nodes(graph, keep_predictors=False))
    fake = attach_fake_quant(model, read_quant_sites(ptq), "torch", torch.from_numpy(batch(0)))
    given = []

    def per_tensor(x, scale, zero_point, *_range):  # noqa: ANN001, ANN202
        given.append((x.device, scale.device, zero_point.device))
        return x

    def per_channel(x, scale, zero_point, *_axis_and_range):  # noqa: ANN001, ANN202
        given.append((x.device, scale.device, zero_point.device))
        return x

    monkeypatch.setattr(torch, "fake_quantize_per_tensor_affine", per_tensor)
    monkeypatch.setattr(torch, "fake_quantize_per_channel_affine", per_channel)
    meta = torch.device("meta")
    try:
        model.to(meta)
        with torch.no_grad():
            model.head_outputs(torch.zeros(1, 3, *SIZE, device=meta))
    finally:
        fake.remove()
    assert len(given) >= len(fake.activation_keys) + len(fake.weight_modules) > 20
    assert set(given) == {(meta, meta, meta)}
    assert {buffer.device for buffer in fake.modules.buffers()} == {meta}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")
def test_qat_for_cpus_fine_tunes_on_a_cuda_gpu(qat_data, tmp_path):
    """The CPU placement's fake quantization (PyTorch's) on the GPU ``train`` moves the model to."""
    from retina_edge.cli.main import main
    from retina_edge.runtime.core.model_file import read_deployment

    output = tmp_path / "qat-cpu.onnx"
    assert main(["qat", "--weights", str(qat_data / "tiny.pth"), "--data", str(qat_data / "data"), "--target", "cpu",
                 "--iterations", "2", "--batch-size", "2", "--calib-count", "16", "-o", str(output)]) == 0
    assert read_deployment(output).precision == "int8" and read_deployment(output).target == "cpu"


def test_weight_sites_are_the_convolutions_under_a_renamed_fold(layout):
    """v1 layouts fold FrozenBatchNorm's Mul/Add into the conv, and the simplifier names the fused
    node after the norm: the weight site must still be the convolution module."""
    model, graph, _stats = layout
    names = [node.name for node in onnx.load(str(graph), load_external_data=False).graph.node if node.op_type == "Conv"]
    fake = attach_fake_quant(model, QuantSites({}, frozenset(names)), "torch", torch.from_numpy(batch(0)))
    fake.remove()
    convs = {name for name, module in model.named_modules() if isinstance(module, torch.nn.Conv2d)}
    assert set(fake.weight_modules) == convs
    if model.config.variant == "v1":  # the case this guards: fused convs named after their norm
        assert any("/bn" in name for name in names)


def test_batchnorm_folding_keeps_the_int8_weight_codes(tmp_path):
    """Trained-looking BatchNorm (scales of both signs, shifted statistics): every conv's INT8 codes
    in the QAT graph equal the fake-quant codes the model trained with (times the BN scale's sign)."""
    from retina_edge.calib.build import BuildOptions, build_precision_graph
    from retina_edge.calib.qat import snap_weights

    torch.manual_seed(0)
    model = build_model("resnet18_fpn", num_classes=3, backbone_width=16, fpn_channels=32, head_convs=1, norm="bn").eval()
    norms = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(-1.5, 1.5)
            module.running_mean.uniform_(-0.3, 0.3)
            module.running_var.uniform_(0.3, 3.0)
            norms[name] = module
    export = ExportOptions(preprocess=PreprocessConfig(*SIZE), tail="none")
    graph = export_onnx(model, tmp_path / "fp32.onnx", export)
    stats = compute_stats(graph, iter([batch(seed) for seed in range(2)]), method="max")
    ptq = quantize_for_tensorrt(graph, stats, tmp_path / "ptq.onnx", exclude=[])
    fake = attach_fake_quant(model, read_quant_sites(ptq), "modelopt", torch.from_numpy(batch(0)))
    fake.remove()
    with torch.no_grad():  # the fake-quant codes of the trained weights, each conv's BN sign applied
        expected = {}
        for name in fake.weight_modules:
            weight = model.get_submodule(name).weight
            fake_quantized = fake.run(fake.weight_quantizer(name), weight)  # what the model trained with
            codes = torch.round(fake_quantized * (127 / weight.abs().flatten(1).amax(1))[:, None, None, None])
            norm = norms.get(name.replace("conv", "bn").replace("downsample.0", "downsample.1"))
            expected[name] = (codes * torch.sign(norm.weight)[:, None, None, None] if norm is not None else codes).numpy()
    snap_weights(model, fake)
    qat = build_precision_graph(model, tmp_path / "qat.onnx", export=export,
                                build=BuildOptions(precision="int8", target="tensorrt", stats=stats)).model_path
    exported = weight_codes(qat, model)
    assert set(exported) == set(expected) and any(name in norms or "bn" in name for name in norms)
    for name, codes in expected.items():
        np.testing.assert_array_equal(exported[name], codes, err_msg=name)


def weight_codes(path, model) -> dict[str, np.ndarray]:  # noqa: ANN001
    """conv module -> the INT8 codes its Conv nodes' weight Q/DQ pairs produce in the graph at ``path``."""
    graph = onnx.load(str(path)).graph
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    producer = {output: node for node in graph.node for output in node.output}
    codes = {}
    for node in graph.node:
        dequantize = producer.get(node.input[1]) if node.op_type == "Conv" else None
        if dequantize is None or dequantize.op_type != "DequantizeLinear":
            continue
        weight, scale = values[producer[dequantize.input[0]].input[0]], values[dequantize.input[1]]
        found = np.clip(np.round(weight / scale[:, None, None, None]), -128, 127)
        name = node_site(model, node.name)[0].module
        assert name not in codes or np.array_equal(codes[name], found)  # a shared head conv: one set of codes
        codes[name] = found
    return codes


def test_modelopt_refuses_zero_points():
    from retina_edge.calib.qat import FAKE_QUANT_BACKENDS
    from retina_edge.calib.qat_sites import ActivationQuant

    with pytest.raises(RetinaEdgeError, match="symmetric"):
        FAKE_QUANT_BACKENDS["modelopt"].activation(ActivationQuant(0.1, 12, 0, 255, "x"))


def test_qat_offers_the_int8_recipes_it_can_mirror_and_refuses_others_in_one_line(capsys):
    """``--target``: every INT8 recipe whose graph target has a fake-quant backend (a registered one
    placed for CPUs too); a recipe placed for a target without one is refused before any work."""
    from retina_edge.calib.build import CalibrationOptions
    from retina_edge.calib.recipes import Recipe, register_recipe, unregister_recipe
    from retina_edge.cli.main import build_parser
    from retina_edge.training.qat import QatOptions, QatRequest

    register_recipe(Recipe("int8", "cpu-s8", lambda inputs: None, graph_target="cpu", calibrated=True))
    register_recipe(Recipe("int8", "npu", lambda inputs: None, graph_target="npu", calibrated=True))
    argv = ["qat", "--weights", "w.pth", "--data", "d", "-o", "m.onnx", "--target"]
    try:
        assert build_parser().parse_args([*argv, "cpu-s8"]).target == "cpu-s8"
        with pytest.raises(SystemExit):
            build_parser().parse_args([*argv, "npu"])
        assert "invalid choice: 'npu' (choose from" in capsys.readouterr().err
        with pytest.raises(RetinaEdgeError, match="no fake quantization for the int8 recipe for npu .*placed for npu.*"
                                                  "mirrors the int8 recipes for cpu, tensorrt, cpu-s8$"):
            QatRequest(target="npu", calibration=CalibrationOptions(source="c"), schedule=QatOptions(data="d", out_dir="o"))
    finally:
        unregister_recipe("int8", "cpu-s8")
        unregister_recipe("int8", "npu")


def test_schedule_defaults_scale_the_original_training():
    from retina_edge.training.qat import QatOptions

    original = json.loads((__import__("pathlib").Path(__file__).parents[1] / "retina_edge" / "presets"
                           / "synth_train.json").read_text())
    config = QatOptions(data="d", out_dir="o").train_config(original, train_images=800)
    assert (config.iterations, config.lr, config.optimizer, config.batch_size) == (185, pytest.approx(3e-5), "adamw", 8)
    assert config.freeze_bn_stats and not config.amp and config.warmup_iters == 0 and config.schedule == "cosine"
    fallback = QatOptions(data="d", out_dir="o", lr=1e-4).train_config(None, train_images=80)
    assert (fallback.iterations, fallback.lr) == (round(0.1 * 12 * 10), 1e-4)  # TrainConfig's 12 epochs of 10 batches
    with pytest.raises(RetinaEdgeError, match="fraction"):
        QatOptions(data="d", out_dir="o", fraction=0)


def test_the_schedule_claims_no_frozen_stages_it_does_not_freeze():
    """train() does not build the model QAT gives it, so a trainable_layers taken from the original
    training would be recorded (qat.json, the checkpoint) and never applied: the model's own config
    freezes its stages."""
    from retina_edge.training.qat import QatOptions
    from retina_edge.training.train import TrainConfig

    config = QatOptions(data="d", out_dir="o").train_config({"trainable_layers": 2, "lr": 0.02}, train_images=80)
    assert config.lr == pytest.approx(2e-4) and config.trainable_layers == TrainConfig(data="d").trainable_layers


@pytest.fixture(scope="module")
def qat_data(tmp_path_factory):
    """A tiny checkpoint of the synthetic classes and a small COCO set to fine-tune it on."""
    from tiny import tiny_model

    from retina_edge.data.synth import CLASSES, SynthConfig, write_dataset
    from retina_edge.model.checkpoints import save_checkpoint

    folder = tmp_path_factory.mktemp("qat-data")
    write_dataset(folder / "data", SynthConfig(num_images=20, seed=3, min_side=64, max_side=96, max_object=60))
    save_checkpoint(folder / "tiny.pth", tiny_model(CLASSES, min_size=64, max_size=96))
    return folder


def qdq_positions(path) -> set[tuple]:  # noqa: ANN001
    """(node, input index, what is quantized) of every Q/DQ pair a node reads (weights by role, since
    the initializer names of two exports differ)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    constants = {init.name for init in graph.initializer}
    producer = {output: node for node in graph.node for output in node.output}
    positions = set()
    for node in graph.node:
        for index, name in enumerate(node.input):
            dequantize = producer.get(name)
            if node.op_type not in ("QuantizeLinear", "DequantizeLinear") and dequantize is not None \
                    and dequantize.op_type == "DequantizeLinear":
                quantize = producer.get(dequantize.input[0])
                source = quantize.input[0] if quantize is not None else dequantize.input[0]
                positions.add((node.name, index, "constant" if source in constants else source))
    return positions


# The CPU run (and its resume) is slow-marked: the same build path writes both, and the CPU
# placement's arithmetic is held to its PTQ graph by test_fake_quant_model_computes_the_ptq_graph.
@pytest.mark.parametrize("target", ["tensorrt", pytest.param("cpu", marks=pytest.mark.slow)])
def test_qat_writes_the_ptq_graphs_kind_node_for_node(qat_data, target, tmp_path, capsys):
    from retina_edge.cli.main import main
    from retina_edge.runtime import Detector
    from retina_edge.runtime.core.model_file import read_deployment
    from retina_edge.data.synth import SynthConfig, render_image

    output = tmp_path / f"qat-{target}.onnx"
    argv = ["qat", "--weights", str(qat_data / "tiny.pth"), "--data", str(qat_data / "data"), "--target", target,
            "--iterations", "2", "--batch-size", "2", "--calib-count", "16", "-o", str(output)]
    assert main(argv) == 0
    ptq = tmp_path / f"qat-{target}.qat" / "ptq.onnx"
    positions = qdq_positions(output)
    assert positions == qdq_positions(ptq) and len(positions) > 60
    assert read_deployment(output) == read_deployment(ptq)  # contract: int8, the target, tail, batch, classes
    assert read_deployment(output).precision == "int8" and read_deployment(output).target == target
    assert output.with_suffix(".calib.cache").is_file() == (target == "tensorrt")
    # A resume reads its schedule back from qat.json: a changed flag is refused, not ignored.
    written = output.read_bytes()
    capsys.readouterr()
    assert main([*argv, "--resume", "--iterations", "5", "--lr", "0.001"]) == 2
    err = capsys.readouterr().err
    assert "schedule.iterations 2 there, 5 here" in err and "schedule.lr None there, 0.001 here" in err, err
    assert err.count("\n") == 1 and output.read_bytes() == written
    images = [render_image(SynthConfig(seed=5, min_side=64, max_side=96), i)[0] for i in range(3)]
    for backend in ("onnxruntime", "openvino"):
        with Detector(output, backend=backend) as detector:
            assert len(detector.detect(images)) == 3
    if target == "cpu":  # (slow-marked) a finished run resumes to the same graph
        first = output.read_bytes()
        assert main([*argv, "--resume"]) == 0
        assert output.read_bytes() == first


def test_resume_with_other_settings_is_refused(qat_data, tmp_path, capsys):
    from retina_edge.cli.main import main

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "qat.json").write_text(json.dumps({"settings": {"target": "cpu"}}))
    argv = ["qat", "--weights", str(qat_data / "tiny.pth"), "--data", str(qat_data / "data"), "--out", str(folder),
            "-o", str(tmp_path / "m.onnx"), "--resume"]
    assert main(argv) == 2
    assert "other settings" in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()


@pytest.mark.slow  # calibrates and times steps; the schedule it prints is test_schedule_defaults_scale_the_original_training's
def test_dry_run_says_the_schedule_and_writes_nothing(qat_data, tmp_path, capsys):
    from retina_edge.cli.main import main

    output = tmp_path / "m.onnx"
    assert main(["qat", "--weights", str(qat_data / "tiny.pth"), "--data", str(qat_data / "data"), "--target", "cpu",
                 "--calib-count", "16", "--batch-size", "2", "--fraction", "0.5", "-o", str(output), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    # tiny.pth has no training options: half of TrainConfig's 12 epochs of 16 images in batches of 8, at 1% of 0.01
    assert "schedule: 12 iterations of batch 2" in printed and "lr 0.0001" in printed and "frozen" in printed
    assert "estimate:" in printed and "s per iteration" in printed
    assert not output.exists() and not output.with_suffix(".qat").exists()


def test_the_dry_runs_steps_take_a_train_split_smaller_than_a_batch(tmp_path):
    """The real run's loader keeps a short last batch; the dry run's timed batches wrap round."""
    from tiny import tiny_model

    from retina_edge.data.synth import CLASSES, SynthConfig, write_dataset
    from retina_edge.training.qat import QatOptions, _time_steps

    write_dataset(tmp_path / "data", SynthConfig(num_images=4, seed=3, min_side=64, max_side=96, max_object=60))
    config = QatOptions(data=str(tmp_path / "data"), out_dir=str(tmp_path / "o"), batch_size=4).train_config(None, 3)
    seconds = _time_steps(tiny_model(CLASSES, min_size=64, max_size=96), config, steps=1)
    assert config.batch_size == 4 and seconds > 0


def test_classes_other_than_the_datas_are_refused(qat_data, tmp_path, capsys):
    from tiny import tiny_model

    from retina_edge.cli.main import main
    from retina_edge.model.checkpoints import save_checkpoint

    save_checkpoint(tmp_path / "abc.pth", tiny_model(("a", "b", "c")))
    assert main(["qat", "--weights", str(tmp_path / "abc.pth"), "--data", str(qat_data / "data"),
                 "-o", str(tmp_path / "m.onnx"), "--calib-count", "16"]) == 2
    assert "are not the data's" in capsys.readouterr().err
