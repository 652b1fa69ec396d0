"""``retina-edge demo``: the whole toolkit in one command, offline, on the preset model.

preset:synth -> FP32 / FP16 / INT8 (CPU and TensorRT placements, and one INT8 under an AP budget)
ONNX graphs -> verify each
against the PyTorch reference on fresh synthetic val data (COCO AP too) -> bench side by side ->
detection on a generated video -> one folder with a summary, reports, plots and the video.
TensorRT engines are built too where TensorRT is installed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

from retina_edge.atomic import write_text_atomic

logger = logging.getLogger(__name__)

VARIANTS = (("fp32", "cpu"), ("fp16", "cpu"), ("int8", "cpu"), ("int8", "tensorrt"))
#: The demo's INT8 accuracy search: AP points the CPU graph may lose against FP32.
SEARCH_BUDGET = 0.05


def run_demo(out_dir: str | Path, *, val_images: int = 100, video_frames: int = 90) -> Path:
    """Run everything into ``out_dir``, logging each step; returns the summary Markdown file."""
    from retina_edge.quality.bench import detector_entry, format_table, measure_load, plot, pytorch_entry, run_bench
    from retina_edge.calib.build import CalibrationOptions, build_precision_graph
    from retina_edge.model.checkpoints import load_model
    from retina_edge.data.coco_dataset import resolve_split
    from retina_edge.data.coco_dataset import load_images
    from retina_edge.export.onnx_export import ExportOptions
    from retina_edge.preprocess import preprocess_for
    from retina_edge.presets import PRESET_SYNTH_DATA
    from retina_edge.calib.search import SearchOptions
    from retina_edge.quality.report import search_summary, terminal_table, write_report
    from retina_edge.runtime import Detector
    from retina_edge.data.synth import write_dataset
    from retina_edge.quality.verify import run_verify

    out = Path(out_dir)
    start = time.perf_counter()
    logger.info("1/5 preset model and fresh synthetic data (seed 1: not the training images)")
    model = load_model("preset:synth")
    data = dataclasses.replace(PRESET_SYNTH_DATA, num_images=2 * val_images, seed=1, val_fraction=0.5)
    write_dataset(out / "data", data)
    ann_file, val_dir = resolve_split(out / "data", "val")
    export = ExportOptions(preprocess=preprocess_for(model.config), batch=(1, 1, 8))
    calibration = CalibrationOptions(source=str(out / "data" / "train"), count=val_images, min_images=16,
                                     cache_dir=out / "calib-cache")
    logger.info("2/5 FP32, FP16 and INT8 graphs")
    models = {}
    for precision, target in VARIANTS:
        name = f"synth-{precision}" + (f"-{target}" if precision == "int8" else "")
        build_precision_graph(model, out / f"{name}.onnx", export=export, precision=precision, target=target,
                              calibration=calibration)
        models[name] = out / f"{name}.onnx"
    logger.info("2/5 INT8 for CPUs under an AP budget of %s points (measured on the train split's annotations, so "
                "verify's val images stay unseen)", SEARCH_BUDGET)
    train_ann, _ = resolve_split(out / "data", "train")
    searched = build_precision_graph(model, out / "synth-int8-cpu-search.onnx", export=export, precision="int8",
                                     target="cpu", calibration=calibration,
                                     search=SearchOptions(max_ap_drop=SEARCH_BUDGET, val=str(train_ann), time_limit=180))
    models["synth-int8-cpu-search"] = searched.model_path
    search = dataclasses.asdict(searched.search)
    logger.info("3/5 verify every graph against the PyTorch reference")
    images, image_ids = load_images(str(val_dir), val_images, str(ann_file))
    summary_rows = []
    for name, path in models.items():
        report, reference, deployed = run_verify(Detector(path, backend="onnxruntime"), model, images,
                                                 annotations=(str(ann_file), image_ids))
        logger.info(terminal_table(report))
        write_report(report, reference, deployed, images, out / "verify" / name, title=f"verify {name}",
                     search=search if name == "synth-int8-cpu-search" else None)
        coco = report.coco
        low, high = coco["delta_points_ci95"]["AP"]
        summary_rows.append(f"| {name} | {100 * coco['reference']['AP']:.2f} | {100 * coco['deployed']['AP']:.2f} | "
                            f"{coco['delta_points']['AP']:+.2f} [{low:+.2f}, {high:+.2f}] | {report.ap_vs_reference:.4f} | "
                            f"{'PASS' if report.passed else 'FAIL'} | [report](verify/{name}/report.md) |")
    logger.info("4/5 bench side by side (batch 1)")
    entries = [pytorch_entry("pytorch fp32 eager", model, export.preprocess)]
    for name, backend in (("synth-fp32", "onnxruntime"), ("synth-int8-cpu", "onnxruntime"),
                          ("synth-int8-cpu-search", "onnxruntime"), ("synth-fp32", "openvino")):
        detector, added = measure_load(Detector, models[name], backend=backend)
        label = f"{name} [{backend}{' f32' if backend == 'openvino' else ''}]"
        entries.append(detector_entry(label, detector, rss_mb=added))
    summaries = run_bench(entries, images[:16], batch=1, iterations=20, warmup=3)
    table = format_table(summaries)
    logger.info(table)
    write_text_atomic(out / "bench.json", json.dumps(summaries, indent=2))
    plot(summaries, str(out / "bench.png"))
    logger.info("5/5 detection on a generated video")
    video_path = _annotated_video(out, Detector(models["synth-int8-cpu"], backend="onnxruntime"), video_frames)
    elapsed = time.perf_counter() - start
    lines = [
        "# retina-edge demo", "",
        f"Preset `synth` ({model.config.arch}, input {export.preprocess.height}x{export.preprocess.width}), "
        f"{len(images)} fresh synthetic val images; finished in {elapsed:.0f} s.", "",
        "## Accuracy: COCO AP against the annotations, and agreement with the PyTorch reference", "",
        "Delta: deployed minus reference, with its 95% paired bootstrap interval over the images.", "",
        "| model | AP reference | AP deployed | delta (points) [95% interval] | AP vs reference | verify | details |",
        "|---|---|---|---|---|---|---|", *summary_rows, "", search_summary(search),
        "![search](verify/synth-int8-cpu-search/search.png)", "",
        "## Speed (batch 1, this machine, interleaved run; ratio to PyTorch eager)", "", "```", table, "```", "",
        "![bench](bench.png)", "", "## Video", "", f"[{video_path.name}]({video_path.name}): every frame through synth-int8-cpu.", "",
    ]
    write_text_atomic(out / "summary.md", "\n".join(lines))
    return out / "summary.md"


def _annotated_video(out: Path, detector, frames: int) -> Path:  # noqa: ANN001
    from retina_edge.runtime.draw import draw_detections
    from retina_edge.runtime.video_writer import Mp4Writer
    from retina_edge.data.synth_video import SyntheticVideo

    video = SyntheticVideo(seed=3)
    with Mp4Writer(out / "video_detections.mp4", 15.0) as writer:
        for index in range(frames):
            frame = video.frame(index)
            writer.write(draw_detections(frame, detector.detect(frame)[0].filter(score_thresh=0.3)))
    return writer.path
