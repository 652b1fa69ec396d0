"""The precision door: a recipe defined here, in tests/, added to the table without touching the
library, builds through ``build_precision_graph`` and ``retina-edge build``, and verify reads its
tolerances. The recipe is INT8 for CPUs with symmetric signed activations (S8/S8, the layout some
ARM CPU kernels want) calibrated by max by default: its own placement, written with ONNX Runtime's
quantizer, against the built-in U8-activation one."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from retina_edge.calib.build import BuildOptions, CalibrationOptions, build_precision_graph
from retina_edge.calib.recipes import INT8_VERIFY, ConvertInputs, Recipe, get_recipe, register_recipe, unregister_recipe
from retina_edge.cli.main import main
from retina_edge.errors import RetinaEdgeError
from retina_edge.export.onnx_export import ExportOptions
from retina_edge.imageio import write_image_rgb
from retina_edge.preprocess import PreprocessConfig
from retina_edge.quality.verify import VerifyThresholds
from retina_edge.runtime import Detector
from tiny import tiny_model

TARGET = "cpu-s8"


def symmetric_int8(inputs: ConvertInputs) -> None:
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    ranges = TensorsData(CalibrationMethod.MinMax, {name: TensorData(lowest=np.float32(low), highest=np.float32(high))
                                                    for name, (low, high) in inputs.stats.ranges.items()})
    quantizer = QDQQuantizer(load_model_with_shape_infer(inputs.fp32), True, False, QuantType.QInt8, QuantType.QInt8,
                             ranges, [], list(inputs.exclude), ["Conv"],
                             {"ActivationSymmetric": True, "WeightSymmetric": True})
    quantizer.quantize_model()
    quantizer.model.save_model_to_file(str(inputs.output))


@pytest.fixture
def recipe():
    added = register_recipe(Recipe("int8", TARGET, symmetric_int8, graph_target="cpu", calibrated=True,
                                   calibration_method="max", search_high="fp32", verify={**INT8_VERIFY, "max_delta_ap": 2.0},
                                   description="symmetric S8 activations and weights (ONNX Runtime QDQ)"))
    yield added
    unregister_recipe("int8", TARGET)


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calib")
    rng = np.random.default_rng(0)
    for index in range(8):
        write_image_rgb(folder / f"{index}.png", rng.integers(0, 256, (100, 120, 3), dtype=np.uint8))
    return CalibrationOptions(str(folder), count=8, min_images=8, cache_dir=folder / "cache")


def test_a_registered_recipe_builds_and_verify_reads_it(recipe, calibration, tmp_path):
    model = tiny_model()
    export = ExportOptions(preprocess=PreprocessConfig(128, 160), tail="decode")
    built = build_precision_graph(model, tmp_path / "m.onnx", export=export,
                                  build=BuildOptions(precision="int8", target=TARGET, calibration=calibration))
    fp32 = build_precision_graph(model, tmp_path / "f.onnx", export=export, build=BuildOptions(precision="fp32"))
    graph = onnx.load(str(built.model_path))
    zero_points = {i.name: i.data_type for i in graph.graph.initializer}
    activation_zero_points = [zero_points[n.input[2]] for n in graph.graph.node if n.op_type == "QuantizeLinear"]
    assert len(activation_zero_points) > 10 and set(activation_zero_points) == {onnx.TensorProto.INT8}  # signed, unlike cpu's U8
    assert (built.stats_method, built.metadata.precision, built.metadata.target) == ("max", "int8", "cpu")
    image = np.random.default_rng(1).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    with Detector(built.model_path) as quantized, Detector(fp32.model_path) as full:
        got, want = quantized.detect(image)[0], full.detect(image)[0]
        assert len(got) > 0 and abs(len(got) - len(want)) <= 0.3 * len(want)
    assert get_recipe("int8", TARGET) is recipe
    assert VerifyThresholds.for_precision("int8", "cpu").max_delta_ap == 1.0  # the built-in recipes come first


def test_the_build_command_offers_and_builds_it(recipe, calibration, tmp_path, capsys):
    from retina_edge.model.checkpoints import save_checkpoint

    save_checkpoint(tmp_path / "w.pth", tiny_model())
    assert main(["build", "--help"]) == 0
    assert TARGET in capsys.readouterr().out
    assert main(["build", "--int8", "--target", TARGET, "--weights", str(tmp_path / "w.pth"), "--imgsz", "128",
                 "--calib", calibration.source, "--calib-count", "8", "--backend", "onnxruntime",
                 "-o", str(tmp_path / "m.onnx")]) == 0
    assert "int8 for cpu" in capsys.readouterr().out and (tmp_path / "m.onnx").is_file()


def test_an_unknown_combination_names_the_recipes(recipe):
    with pytest.raises(RetinaEdgeError, match=f"no recipe builds fp16 for {TARGET}") as error:
        build_precision_graph(tiny_model(), "unused.onnx", export=ExportOptions(PreprocessConfig(128, 160)), build=BuildOptions("fp16", TARGET))
    assert f"int8 for {TARGET}" in str(error.value) and error.value.options == ("precision", "target")
    with pytest.raises(RetinaEdgeError, match="precision must be a short lowercase name"):
        Recipe("FP 8", TARGET, symmetric_int8)  # a new precision is any name (the plugin test adds one); not any string
