"""The bench scripts' own arithmetic (their timings are not tested: see bench/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def cpu_ceiling(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import cpu_ceiling

    return cpu_ceiling


def test_conv_macs_counts_groups_strides_and_run_time_shapes(cpu_ceiling, tmp_path):
    """Two convs, the second grouped, strided and behind a Reshape whose shape is known only at
    run time (as the GroupNorm head's convs are)."""
    weights = [numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "w1"),
               numpy_helper.from_array(np.ones((16, 2, 1, 1), np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["images", "w1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Shape", ["a"], ["shape"]),
             helper.make_node("Reshape", ["a", "shape"], ["b"]),
             helper.make_node("Conv", ["b", "w2"], ["c"], group=4, strides=[2, 2])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 12, 12])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, None)], weights)
    path = tmp_path / "two-convs.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    first = 8 * 12 * 12 * (3 * 3 * 3)  # every output value: in * kh * kw MACs
    second = 16 * 6 * 6 * (2 * 1 * 1)  # stride 2 halves each side; a group reads 8 / 4 channels
    assert cpu_ceiling.conv_macs(path, 12) == first + second


def test_int8_conv_graph_computes_the_fp32_conv(cpu_ceiling):
    """The INT8 rate is timed on the same conv as the FP32 one, only quantized."""
    import onnxruntime as ort

    x = np.random.default_rng(2).random((1, 8, 6, 6), np.float32)
    outputs = [ort.InferenceSession(cpu_ceiling.conv_graph(8, 6, int8=int8).SerializeToString(),
                                    providers=["CPUExecutionProvider"]).run(None, {"images": x})[0] for int8 in (False, True)]
    assert outputs[0].shape == outputs[1].shape == (1, 8, 6, 6)
    assert np.abs(outputs[1] - np.clip(outputs[0], -128 * 0.02, 127 * 0.02)).max() < 0.05


def test_conv_rates_times_every_backend(cpu_ceiling, tmp_path):
    rates = cpu_ceiling.conv_rates(8, 6, 1, 2, tmp_path)
    assert {"onnxruntime fp32", "onnxruntime int8"} <= set(rates) and all(rate > 0 for rate in rates.values())
