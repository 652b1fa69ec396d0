"""Our INT8 graph for CPUs against NNCF's (``nncf.quantize``, OpenVINO's own quantizer): the cost of
making each from the same FP32 graph and images, and their latency on OpenVINO side by side.

    pip install nncf   # 3.4 was measured
    python bench/nncf_bench.py --images 32 --imgsz 512 --iters 20 [--folder DIR]

The model is ResNet-50 FPN in torchvision's v2 layout with seeded random weights (no COCO weights
can be downloaded here), the images synthetic scenes, both preprocessed by the model's own
preprocessing. Each quantization runs in its own process (seconds and that process's peak resident
memory). NNCF quantizes the OpenVINO model read from the same ONNX file with its defaults
(performance preset, ``subset_size`` = the image count). Latency: batch 1, both models on
OpenVINO CPU with the same threads, interleaved iteration by iteration; the ratio is ours / NNCF's.
``--folder`` keeps the prepared model, images and both INT8 models for a re-run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from calibration_bench import build, measured, prepare


def nncf_worker(fp32: str, calib: str, count: int, output: str) -> None:
    """Runs in its own process: ``nncf.quantize`` of ``fp32`` on ``count`` images -> OpenVINO IR."""
    import nncf
    import openvino as ov

    from retina_edge.calib.sources import CalibrationReport, calibration_batches, collect_calibration_items
    from retina_edge.runtime.core.model_file import read_deployment

    preprocess = read_deployment(fp32).preprocess
    items = collect_calibration_items(calib, count=count, report=CalibrationReport())
    batches = [batch for batch, _ in calibration_batches(items, preprocess, count=count, batch_size=1)]
    quantized = nncf.quantize(ov.Core().read_model(fp32), nncf.Dataset(batches), subset_size=count)
    ov.save_model(quantized, output)


def nncf_build(fp32: Path, calib: Path, count: int, folder: Path) -> tuple[float, float, float]:
    """(seconds, peak GB, IR MB) of the NNCF worker in a fresh process."""
    output = folder / "nncf-int8.xml"
    seconds, peak = measured([sys.executable, __file__, "--nncf-worker", str(fp32), str(calib), str(count), str(output)])
    return seconds, peak, (output.stat().st_size + output.with_suffix(".bin").stat().st_size) / 1e6


def latency(models: dict[str, Path], imgsz: int, iters: int, threads: int | None) -> dict[str, float]:
    """Median ms of one batch-1 inference per model on OpenVINO CPU, timed by
    :func:`retina_edge.quality.bench.run_bench` (interleaved), through the backend ``Detector`` runs (f32,
    latency hint; it also keeps the thread's signal stack, which bare ``compile_model`` calls leave
    on freed memory once the models are gone: the next signal crashes the process)."""
    import numpy as np

    from retina_edge.quality.bench import backend_entry, run_bench
    from retina_edge.runtime.backends.openvino_backend import OpenVinoBackend

    batch = np.random.default_rng(0).random((1, 3, imgsz, imgsz), np.float32)
    entries = [backend_entry(name, OpenVinoBackend(path, threads=threads), batch) for name, path in models.items()]
    return {row["name"]: row["inference_ms"] for row in run_bench(entries, [batch], batch=1, iterations=iters, warmup=3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--imgsz", type=int, default=512)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--folder", type=Path, help="keep (and reuse) the prepared files here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.folder or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        if (folder / "fp32.onnx").is_file():
            weights, calib, graph = folder / "r50v2.pth", folder / "calib", folder / "fp32.onnx"
        else:
            weights, calib, graph = prepare(folder, args.images, args.imgsz)
        ours = build(weights, calib, args.images, args.imgsz, "cpu", folder)
        theirs = nncf_build(graph, calib, args.images, folder)
        print("| quantizer | seconds | peak GB | model MB |\n|---|---|---|---|")
        print(f"| retina-edge build --int8 --target cpu (whole build: export + calibration + Q/DQ) | {ours[0]:.0f} | {ours[1]:.2f} | {ours[2]:.1f} |")
        print(f"| nncf.quantize (calibration + FakeQuantize on the read FP32 graph) | {theirs[0]:.0f} | {theirs[1]:.2f} | {theirs[2]:.1f} |")
        times = latency({"ours": folder / "int8-cpu.onnx", "nncf": folder / "nncf-int8.xml", "fp32": graph},
                        args.imgsz, args.iters, args.threads)
        print("| OpenVINO CPU, batch 1 | median ms | ratio to NNCF |\n|---|---|---|")
        for name, ms in times.items():
            print(f"| {name} | {ms:.1f} | {ms / times['nncf']:.2f} |")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--nncf-worker":
        nncf_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        main()
