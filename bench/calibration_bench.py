"""INT8 calibration cost: wall time and peak memory of ``retina-edge build --int8`` per placement,
next to the bare FP32 forward passes over the same images (the floor any calibration pays), and
the statistics alone (calibration without export or Q/DQ insertion).

    python bench/calibration_bench.py --images 512 --imgsz 512 --targets cpu tensorrt [--no-statistics-alone]

The model is ResNet-50 FPN in torchvision's v2 layout with seeded random weights (no COCO weights
can be downloaded here), the images synthetic scenes. Each build runs in its own process with an
empty statistics cache; peak memory is that process's maximum resident set. Printed: seconds,
peak GB, graph size, and the ratio of the build's time to ``images x`` one FP32 forward pass.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def prepare(folder: Path, images: int, imgsz: int) -> tuple[Path, Path, Path]:
    """(checkpoint, image folder, FP32 graph) in ``folder``."""
    import torch

    from retina_edge.model.retinanet import build_model
    from retina_edge.model.checkpoints import save_checkpoint
    from retina_edge.export.onnx_export import ExportOptions, export_onnx
    from retina_edge.imageio import write_image_rgb
    from retina_edge.preprocess import PreprocessConfig
    from retina_edge.data.synth import SynthConfig, render_image

    torch.manual_seed(0)
    model = build_model("resnet50_fpn_v2", num_classes=91).eval()
    save_checkpoint(folder / "r50v2.pth", model)
    for index in range(images):
        write_image_rgb(folder / "calib" / f"{index:04d}.jpg", render_image(SynthConfig(seed=6), index)[0])
    graph = export_onnx(model, folder / "fp32.onnx", ExportOptions(preprocess=PreprocessConfig(imgsz, imgsz)))
    return folder / "r50v2.pth", folder / "calib", graph


def forward_seconds(graph: Path, imgsz: int, repeats: int = 5) -> float:
    """Median seconds of one FP32 forward pass (batch 1) with ONNX Runtime."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).random((1, 3, imgsz, imgsz), np.float32)
    session.run(None, {"images": batch})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {"images": batch})
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def measured(command: list[str], *, env: dict | None = None) -> tuple[float, float]:
    """(seconds, peak GB) of ``command`` in a fresh process: the high-water mark of its own memory
    (``VmHWM``), read while it runs. Not wait4's ``ru_maxrss``: a child's memory starts as a copy
    of this process's at fork, and Linux keeps that copy's high-water mark across exec, so every
    child would report at least this process's peak (1.34 GB after ``prepare``)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak_kb = 0
    while process.poll() is None:
        peak_kb = max(peak_kb, _high_water_kb(process.pid))
        time.sleep(0.05)
    if process.returncode:
        raise SystemExit(f"failed: {' '.join(command)}")
    return time.perf_counter() - start, peak_kb / 1024 / 1024


def _high_water_kb(pid: int) -> int:
    """``VmHWM`` of process ``pid`` in kB (0 once it has exited)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next((int(line.split()[1]) for line in status if line.startswith("VmHWM:")), 0)
    except OSError:
        return 0


def build(weights: Path, calib: Path, images: int, imgsz: int, target: str, folder: Path) -> tuple[float, float, float]:
    """(seconds, peak GB, graph MB) of one ``build --int8`` in a fresh process and statistics cache."""
    output = folder / f"int8-{target}.onnx"
    command = [sys.executable, "-m", "retina_edge.cli.main", "build", "--int8", "--target", target, "--weights", str(weights),
               "--imgsz", str(imgsz), str(imgsz), "--calib", str(calib), "--calib-count", str(images), "-o", str(output)]
    seconds, peak = measured(command, env={**os.environ, "RETINA_EDGE_CACHE": str(folder / f"cache-{target}")})
    return seconds, peak, output.stat().st_size / 1e6


def calibration_only(graph: Path, calib: Path, images: int, method: str = "entropy") -> tuple[float, float]:
    """(seconds, peak GB) of the statistics alone (what both placements share) in a fresh process."""
    code = ("import sys; from retina_edge.calib.sources import CalibrationReport, calibration_batches, collect_calibration_items;"
            "from retina_edge.calib.statistics import compute_stats; from retina_edge.runtime.core.model_file import read_deployment;"
            "g, c, n, m = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4];"
            "items = collect_calibration_items(c, count=n, report=CalibrationReport());"
            "compute_stats(g, (b for b, _ in calibration_batches(items, read_deployment(g).preprocess, count=n, batch_size=8)),"
            " method=m)")
    return measured([sys.executable, "-c", code, str(graph), str(calib), str(images), method])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--imgsz", type=int, default=512)
    parser.add_argument("--targets", nargs="+", default=["cpu", "tensorrt"], choices=["cpu", "tensorrt"])
    parser.add_argument("--no-statistics-alone", action="store_true", help="skip the statistics-alone run (as long as a build)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        weights, calib, graph = prepare(folder, args.images, args.imgsz)
        forward = forward_seconds(graph, args.imgsz)
        print(f"FP32 graph {graph.stat().st_size / 1e6:.1f} MB; one forward pass {forward:.3f} s; "
              f"{args.images} passes {args.images * forward:.0f} s")
        if not args.no_statistics_alone:
            seconds, peak = calibration_only(graph, calib, args.images)
            print(f"statistics alone (entropy, shared by both placements): {seconds:.0f} s, peak {peak:.2f} GB, "
                  f"{seconds / (args.images * forward):.2f} x the bare forward passes")
        print("| placement | seconds | peak GB | graph MB | time / bare forward passes |\n|---|---|---|---|---|")
        for target in args.targets:
            seconds, peak, size = build(weights, calib, args.images, args.imgsz, target, folder)
            print(f"| {target} | {seconds:.0f} | {peak:.2f} | {size:.1f} | {seconds / (args.images * forward):.2f} |")


if __name__ == "__main__":
    main()
