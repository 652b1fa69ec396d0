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
from dataclasses import dataclass
from pathlib import Path

from retina_edge.atomic import write_text_atomic

logger = logging.getLogger(__name__)

#: The demo's INT8 accuracy search: AP points the CPU graph may lose against FP32.
SEARCH_BUDGET = 0.05
#: The searched graph's recipe (the CPU placement: its kept layers run in FP32 on every CPU backend).
SEARCH_RECIPE = ("int8", "cpu")


@dataclass
class DemoSetup:
    """What every step shares: the preset model, its export options, the calibration images and
    the fresh val split (``ann_file`` with images in ``val_dir``)."""

    out: Path
    model: object
    export: object
    calibration: object
    ann_file: Path
    val_dir: Path


def run_demo(out_dir: str | Path, *, val_images: int = 100, video_frames: int = 90, qat=None) -> Path:  # noqa: ANN001
    """Run everything into ``out_dir``, logging each step; returns the summary Markdown file.
    ``qat``: called with the :class:`DemoSetup`, returns more graphs (name -> path) to verify and bench
    beside the others (the CLI passes quantization-aware training's, which lives in a layer above)."""
    from retina_edge.data.coco_dataset import load_images
    from retina_edge.quality.report import search_summary
    from retina_edge.runtime import Detector

    start = time.perf_counter()
    setup = _setup(Path(out_dir), val_images)
    models, search = _build_graphs(setup)
    if qat is not None:
        models.update(qat(setup))
    logger.info("3/5 verify every graph against the PyTorch reference")
    images, image_ids = load_images(str(setup.val_dir), val_images, str(setup.ann_file))
    summary_rows = [_verify(setup, name, path, images, image_ids, search) for name, path in models.items()]
    logger.info("4/5 bench side by side (batch 1)")
    table = _bench(setup, models, images)
    logger.info("5/5 detection on a generated video")
    video_path = _annotated_video(setup.out, Detector(models["synth-int8-cpu"], backend="onnxruntime"), video_frames)
    lines = [
        "# retina-edge demo", "",
        f"Preset `synth` ({setup.model.config.arch}, input {setup.export.preprocess.height}x{setup.export.preprocess.width}), "
        f"{len(images)} fresh synthetic val images; finished in {time.perf_counter() - start:.0f} s.", "",
        "## Accuracy: COCO AP against the annotations, and agreement with the PyTorch reference", "",
        "Delta: deployed minus reference, with its 95% paired bootstrap interval over the images.", "",
        "| model | AP reference | AP deployed | delta (points) [95% interval] | AP vs reference | verify | details |",
        "|---|---|---|---|---|---|---|", *summary_rows, "", search_summary(search),
        "![search](verify/synth-int8-cpu-search/search.png)", "",
        "## Speed (batch 1, this machine, interleaved run; ratio to PyTorch eager)", "", "```", table, "```", "",
        "![bench](bench.png)", "", "## Video", "", f"[{video_path.name}]({video_path.name}): every frame through synth-int8-cpu.", "",
    ]
    write_text_atomic(setup.out / "summary.md", "\n".join(lines))
    return setup.out / "summary.md"


def _setup(out: Path, val_images: int) -> DemoSetup:
    from retina_edge.calib.build import CalibrationOptions
    from retina_edge.data.coco_dataset import resolve_split
    from retina_edge.data.synth import write_dataset
    from retina_edge.export.onnx_export import ExportOptions
    from retina_edge.model.checkpoints import load_model
    from retina_edge.preprocess import preprocess_for
    from retina_edge.presets import PRESET_SYNTH_DATA

    logger.info("1/5 preset model and fresh synthetic data (seed 1: not the training images)")
    model = load_model("preset:synth")
    data = dataclasses.replace(PRESET_SYNTH_DATA, num_images=2 * val_images, seed=1, val_fraction=0.5)
    write_dataset(out / "data", data)
    ann_file, val_dir = resolve_split(out / "data", "val")
    export = ExportOptions(preprocess=preprocess_for(model.config), batch=(1, 1, 8))
    calibration = CalibrationOptions(source=str(out / "data" / "train"), count=val_images, min_images=16,
                                     cache_dir=out / "calib-cache")
    return DemoSetup(out, model, export, calibration, Path(ann_file), Path(val_dir))


def _build_graphs(setup: DemoSetup) -> tuple[dict[str, Path], dict]:
    """Every recipe the demo builds (``synth-<tag>.onnx``), and one INT8 graph under an AP budget."""
    from retina_edge.calib.build import BuildOptions, build_precision_graph
    from retina_edge.calib.recipes import recipes
    from retina_edge.calib.search import SearchOptions
    from retina_edge.data.coco_dataset import resolve_split

    logger.info("2/5 FP32, FP16 and INT8 graphs")
    models = {}
    for recipe in (recipe for recipe in recipes() if recipe.in_demo):
        path = setup.out / f"synth-{recipe.tag}.onnx"
        build_precision_graph(setup.model, path, export=setup.export, build=BuildOptions(
            precision=recipe.precision, target=recipe.target, calibration=setup.calibration))
        models[path.stem] = path
    logger.info("2/5 INT8 for CPUs under an AP budget of %s points (measured on the train split's annotations, so "
                "verify's val images stay unseen)", SEARCH_BUDGET)
    train_ann, _ = resolve_split(setup.out / "data", "train")
    precision, target = SEARCH_RECIPE
    searched = build_precision_graph(setup.model, setup.out / "synth-int8-cpu-search.onnx", export=setup.export,
                                     build=BuildOptions(precision=precision, target=target, calibration=setup.calibration,
                                                        search=SearchOptions(max_ap_drop=SEARCH_BUDGET, val=str(train_ann),
                                                                             time_limit=180)))
    models["synth-int8-cpu-search"] = searched.model_path
    return models, dataclasses.asdict(searched.search)


def _verify(setup: DemoSetup, name: str, path: Path, images: list, image_ids: list, search: dict) -> str:
    """Verify one graph against the reference, write its report; its row of the summary table."""
    from retina_edge.quality.report import terminal_table, write_report
    from retina_edge.quality.verify import run_verify
    from retina_edge.runtime import Detector

    report, reference, deployed = run_verify(Detector(path, backend="onnxruntime"), setup.model, images,
                                             annotations=(str(setup.ann_file), image_ids))
    logger.info(terminal_table(report))
    write_report(report, reference, deployed, images, setup.out / "verify" / name, title=f"verify {name}",
                 search=search if name == "synth-int8-cpu-search" else None)
    coco = report.coco
    low, high = coco["delta_points_ci95"]["AP"]
    return (f"| {name} | {100 * coco['reference']['AP']:.2f} | {100 * coco['deployed']['AP']:.2f} | "
            f"{coco['delta_points']['AP']:+.2f} [{low:+.2f}, {high:+.2f}] | {report.ap_vs_reference:.4f} | "
            f"{'PASS' if report.passed else 'FAIL'} | [report](verify/{name}/report.md) |")


def _bench(setup: DemoSetup, models: dict[str, Path], images: list) -> str:
    """Time the reference and the CPU graphs side by side; write bench.json/png; the table."""
    from retina_edge.quality.bench import detector_entry, format_table, measure_load, plot, pytorch_entry, run_bench
    from retina_edge.runtime import Detector

    entries = [pytorch_entry("pytorch fp32 eager", setup.model, setup.export.preprocess)]
    rows = [("synth-fp32", "onnxruntime"), ("synth-int8-cpu", "onnxruntime"), ("synth-int8-cpu-search", "onnxruntime"),
            *(((name, "onnxruntime"),) if (name := "synth-int8-cpu-qat") in models else ()), ("synth-fp32", "openvino")]
    for name, backend in rows:
        detector, added = measure_load(Detector, models[name], backend=backend)
        label = f"{name} [{backend}{' f32' if backend == 'openvino' else ''}]"
        entries.append(detector_entry(label, detector, rss_mb=added))
    summaries = run_bench(entries, images[:16], batch=1, iterations=20, warmup=3)
    table = format_table(summaries)
    logger.info(table)
    write_text_atomic(setup.out / "bench.json", json.dumps(summaries, indent=2))
    plot(summaries, str(setup.out / "bench.png"))
    return table


def _annotated_video(out: Path, detector, frames: int) -> Path:  # noqa: ANN001
    from retina_edge.runtime.video.draw import draw_detections
    from retina_edge.runtime.video.video_writer import Mp4Writer
    from retina_edge.data.synth_video import SyntheticVideo

    video = SyntheticVideo(seed=3)
    with Mp4Writer(out / "video_detections.mp4", 15.0) as writer:
        for index in range(frames):
            frame = video.frame(index)
            writer.write(draw_detections(frame, detector.detect(frame)[0]))
    return writer.path
