"""The CPU latency table: PyTorch FP32 eager against each deployed form, in one interleaved run.

    python bench/latency_table.py --imgsz 512 --threads 2 --iters 20 [--folder DIR]

Rows: PyTorch FP32 eager, ONNX Runtime FP32, OpenVINO f32, the INT8 graph for CPUs on ONNX
Runtime and on OpenVINO, and that INT8 graph through the default ``Detector`` (``backend="auto"``,
which measures and picks). The model is ResNet-50 FPN in torchvision's v2 layout with seeded
random weights (no COCO weights can be downloaded here); the INT8 graph is built by
``retina-edge build --int8 --target cpu`` on 32 synthetic images. Each timed iteration runs every
row once, in turn, so noise hits them alike; ratios are to PyTorch. ``--folder`` keeps the
prepared files for a re-run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from calibration_bench import build, prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--imgsz", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--folder", type=Path, help="keep (and reuse) the prepared files here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.folder or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "fp32.onnx").is_file():
            prepare(folder, 32, args.imgsz)
        if not (folder / "int8-cpu.onnx").is_file():
            build(folder / "r50v2.pth", folder / "calib", 32, args.imgsz, "cpu", folder)
        os.environ.setdefault("RETINA_EDGE_CACHE", str(folder / "cache"))  # a fresh backend choice
        table(folder / "fp32.onnx", folder / "int8-cpu.onnx", folder / "r50v2.pth", args)


def table(fp32: Path, int8: Path, weights: Path, args: argparse.Namespace) -> None:
    import torch

    from retina_edge.quality.bench import detector_entry, format_table, pytorch_entry, run_bench
    from retina_edge.model.checkpoints import load_model
    from retina_edge.runtime import Detector
    from retina_edge.runtime.backends import BackendOptions
    from retina_edge.data.synth import SynthConfig, render_image

    torch.set_num_threads(args.threads)
    model = load_model(str(weights))
    rows = {
        "onnxruntime fp32": Detector(fp32, backend="onnxruntime", options=BackendOptions(threads=args.threads)),
        "openvino f32": Detector(fp32, backend="openvino", options=BackendOptions(threads=args.threads)),
        "onnxruntime int8 (cpu graph)": Detector(int8, backend="onnxruntime", options=BackendOptions(threads=args.threads)),
        "openvino int8 (same graph)": Detector(int8, backend="openvino", options=BackendOptions(threads=args.threads)),
    }
    auto = Detector(int8, options=BackendOptions(threads=args.threads))
    rows[f"default Detector on int8 -> {auto.backend_name}"] = auto
    print(f"backend auto picked {auto.backend_choice.describe()}")
    entries = [pytorch_entry("pytorch fp32 eager", model, rows["onnxruntime fp32"].metadata.preprocess)]
    entries += [detector_entry(name, detector) for name, detector in rows.items()]
    images = [render_image(SynthConfig(seed=123), i)[0] for i in range(8)]
    print(format_table(run_bench(entries, images, batch=1, iterations=args.iters, warmup=3)))


if __name__ == "__main__":
    main()
