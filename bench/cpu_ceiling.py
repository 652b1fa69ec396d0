"""What INT8 can gain on this CPU: the conv rates of FP32 and INT8, and what they imply.

    python bench/cpu_ceiling.py [--graph fp32.onnx] [--imgsz 512] [--threads 2] [--images 512]

Two measurements: the convolution throughput of FP32 and of INT8 (Q/DQ: u8 activations, s8
per-channel weights) on ONNX Runtime and OpenVINO, timed interleaved on one conv of the RetinaNet
head's shape (3x3, 256 -> 256 channels, 64x64 at 512x512 input), and the multiply-accumulates of
every conv of the FP32 graph (output sizes from one Shape-only run, so the GroupNorm head is
counted too). The ratio of the best INT8 rate to the best FP32 rate bounds what quantizing the
convs can gain here; the MACs at those rates estimate the graph's conv time in each precision,
and so the least time ``--images`` FP32 calibration passes take. Without ``--graph``, the bench
model (ResNet-50 FPN, v2 layout, seeded weights) is exported first. The CPU's INT8 instruction
sets are printed: without VNNI (``vpdpbusd``) an INT8 multiply-accumulate takes three AVX2
instructions, and INT8 convs run about 2x FP32 rather than 3-4x.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path

import numpy as np

INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_int8_flags() -> list[str]:
    """The INT8-relevant instruction sets ``/proc/cpuinfo`` lists (Linux; empty elsewhere)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return [flag for flag in INT8_FLAGS if flag in flags]


def conv_macs(graph: Path, imgsz: int) -> int:
    """Multiply-accumulates of every Conv of ``graph`` for one ``imgsz`` x ``imgsz`` image."""
    import onnx

    from retina_edge.calib.activations import measured_shapes

    model = onnx.load(str(graph))
    weights = {init.name: tuple(init.dims) for init in model.graph.initializer}
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    image = np.zeros((1, 3, imgsz, imgsz), np.float32)
    with tempfile.TemporaryDirectory() as scratch:
        shapes = measured_shapes(model, [node.output[0] for node in convs], image, Path(scratch))
    # weight dims (out, in / group, kh, kw): each output value takes in/group * kh * kw MACs
    return sum(int(np.prod(shapes[node.output[0]])) * int(np.prod(weights[node.input[1]][1:])) for node in convs)


def conv_graph(channels: int, side: int, *, int8: bool):  # noqa: ANN201 (onnx.ModelProto)
    """One 3x3 ``channels`` -> ``channels`` conv on a ``side`` x ``side`` map, FP32 or Q/DQ INT8."""
    from onnx import TensorProto, helper, numpy_helper

    from retina_edge.contract import INPUT_NAME

    weight = np.random.default_rng(0).normal(0, 0.05, (channels, channels, 3, 3)).astype(np.float32)
    shape = [1, channels, side, side]
    conv = {"pads": [1, 1, 1, 1]}
    if int8:
        scales = np.abs(weight).reshape(channels, -1).max(1) / 127
        initializers = {"wq": np.round(weight / scales[:, None, None, None]).astype(np.int8), "ws": scales.astype(np.float32),
                        "wz": np.zeros(channels, np.int8), "s": np.array(0.02, np.float32), "z": np.array(128, np.uint8)}
        nodes = [helper.make_node("QuantizeLinear", [INPUT_NAME, "s", "z"], ["xq"]),
                 helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
                 helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
                 helper.make_node("Conv", ["xd", "wd"], ["c"], **conv),
                 helper.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"]),
                 helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["y"])]
    else:
        initializers = {"w": weight}
        nodes = [helper.make_node("Conv", [INPUT_NAME, "w"], ["y"], **conv)]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
                              [numpy_helper.from_array(value, name) for name, value in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def conv_backends(channels: int, side: int, threads: int, scratch: Path) -> dict:
    """``{"<backend> <precision>": backend}`` for the one-conv graphs, through the backends
    ``Detector`` runs (OpenVINO's if it is installed; its backend also keeps the thread's signal
    stack, which bare ``compile_model`` calls leave on freed memory once the models are gone: a
    later SIGINT crashed the test process that imported this)."""
    import onnx

    from retina_edge.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    backends = {}
    for precision in ("fp32", "int8"):
        path = scratch / f"conv-{precision}.onnx"
        onnx.save(conv_graph(channels, side, int8=precision == "int8"), str(path))
        loaded = [OnnxRuntimeBackend(path, threads=threads)]
        if importlib.util.find_spec("openvino") is not None:
            from retina_edge.runtime.backends.openvino_backend import OpenVinoBackend

            loaded.append(OpenVinoBackend(path, threads=threads))
        backends.update({f"{backend.name} {precision}": backend for backend in loaded})
    return backends


def conv_rates(channels: int, side: int, threads: int, iters: int, scratch: Path) -> dict[str, float]:
    """GMAC/s of each one-conv backend from the median of ``iters`` runs, timed by
    :func:`retina_edge.quality.bench.run_bench` (interleaved, each run after the cores have settled)."""
    from retina_edge.quality.bench import backend_entry, run_bench

    x = np.random.default_rng(1).random((1, channels, side, side), np.float32)
    entries = [backend_entry(name, backend, x) for name, backend in conv_backends(channels, side, threads, scratch).items()]
    macs = channels * channels * 9 * side * side
    return {row["name"]: macs / row["inference_ms"] / 1e6 for row in run_bench(entries, [x], batch=1, iterations=iters, warmup=1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--graph", type=Path, help="an FP32 graph retina-edge exported (default: the bench model)")
    parser.add_argument("--imgsz", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=512, help="calibration images, for the calibration floor")
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--iters", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        graph = args.graph
        if graph is None:
            from calibration_bench import prepare

            graph = prepare(Path(scratch), 0, args.imgsz)[2]
        macs = conv_macs(graph, args.imgsz)
        rates = conv_rates(args.channels, args.side, args.threads, args.iters, Path(scratch))
    print(f"CPU INT8 instruction sets: {', '.join(cpu_int8_flags()) or 'none found'}; {args.threads} threads")
    print(f"conv MACs of {graph.name} at {args.imgsz}x{args.imgsz}: {macs / 1e9:.2f} G per image")
    print("| backend, precision | GMAC/s (3x3 conv) |\n|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.1f} |")
    best = {p: max(r for n, r in rates.items() if n.endswith(p)) for p in ("fp32", "int8")}
    print(f"best INT8 rate / best FP32 rate: {best['int8'] / best['fp32']:.2f}x")
    print(f"at these rates: the graph's convs take {macs / best['fp32'] / 1e6:.0f} ms in FP32 (so "
          f"{args.images} calibration passes >= {args.images * macs / best['fp32'] / 1e9:.0f} s) "
          f"and {macs / best['int8'] / 1e6:.0f} ms in INT8")

if __name__ == "__main__":
    main()
