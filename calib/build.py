"""``retina-edge build``: export -> calibration -> precision graph (-> engine where TensorRT exists).

One function, :func:`build_precision_graph`, with the precision and target as data, not flags
scattered through an exporter: ``fp32`` is the exported graph, ``fp16`` its AutoCast version,
``int8`` its Q/DQ version for ``tensorrt`` (ModelOpt placement + legacy calibration cache) or
``cpu`` (ONNX Runtime placement).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from retina_edge.calib.precision import (
    convert_fp16,
    excluded_nodes,
    quantize_for_cpu,
    quantize_for_tensorrt,
    write_trt_calibration_cache,
)
from retina_edge.calib.sources import (
    CalibrationReport,
    calibration_batches,
    collect_calibration_items,
    default_cache_dir,
)
from retina_edge.calib.statistics import ActivationStats, compute_stats, load_or_compute_stats, stats_key
from retina_edge.contract import KEY_PRECISION
from retina_edge.errors import RetinaEdgeError
from retina_edge.export.onnx_export import ExportOptions, export_onnx, read_metadata, set_metadata
from retina_edge.model import RetinaNet

PRECISIONS = ("fp32", "fp16", "int8")
TARGETS = ("tensorrt", "cpu")


@dataclass(frozen=True)
class CalibrationOptions:
    """Where calibration images come from and how many; ``min_images`` usable ones are required."""

    source: str
    count: int = 512
    method: str = "entropy"
    batch_size: int = 8
    seed: int = 0
    video_stride: int = 10
    min_images: int = 16
    cache_dir: Path = field(default_factory=default_cache_dir)


@dataclass
class BuildResult:
    model_path: Path
    precision: str
    target: str
    calibration_cache: Path | None = None
    report: CalibrationReport | None = None
    stats_cached: bool = False
    stats_images: int = 0


def build_precision_graph(
    model: RetinaNet, output: str | os.PathLike, *, export: ExportOptions, precision: str, target: str = "tensorrt",
    calibration: CalibrationOptions | None = None, keep_predictors: bool = False, log: Callable[[str], None] = print,
) -> BuildResult:
    """Write ``output``: the model as an ONNX graph in ``precision`` for ``target``."""
    if precision not in PRECISIONS:
        raise RetinaEdgeError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if target not in TARGETS:
        raise RetinaEdgeError(f"unknown target {target!r}; expected one of {TARGETS}")
    if precision == "int8" and calibration is None:
        raise RetinaEdgeError("INT8 needs calibration images: pass --calib (an image folder, COCO json, video or glob)")
    output = Path(output)
    with tempfile.TemporaryDirectory(prefix="retina-edge-build-") as scratch:
        fp32 = export_onnx(model, Path(scratch) / "fp32.onnx", export)
        result = BuildResult(output, precision, target)
        if precision == "fp32":
            shutil.copyfile(fp32, Path(scratch) / "out.onnx")
        elif precision == "fp16":
            log("converting to FP16 (ModelOpt AutoCast; inputs, outputs and the decode tail stay FP32)")
            convert_fp16(fp32, Path(scratch) / "out.onnx")
        else:
            stats, batch = _calibrate(fp32, export, calibration, result, log)
            exclude = excluded_nodes(fp32, keep_predictors=keep_predictors)
            if target == "tensorrt":
                log("inserting Q/DQ nodes for TensorRT (ModelOpt, per-channel weights)")
                quantize_for_tensorrt(fp32, stats, Path(scratch) / "out.onnx", exclude=exclude, calibration_batch=batch)
                result.calibration_cache = write_trt_calibration_cache(stats, output.with_suffix(".calib.cache"))
            else:
                log("inserting QDQ nodes for CPUs (ONNX Runtime: U8 activations, S8 per-channel weights)")
                quantize_for_cpu(fp32, stats, Path(scratch) / "out.onnx", exclude=exclude)
        _finish(Path(scratch) / "out.onnx", fp32, output, f"{precision}-{target}" if precision == "int8" else precision)
    return result


def _calibrate(fp32: Path, export: ExportOptions, options: CalibrationOptions, result: BuildResult,
               log: Callable[[str], None]) -> tuple[ActivationStats, object]:
    from retina_edge.progress import Progress

    report = CalibrationReport()
    items = collect_calibration_items(options.source, count=options.count, seed=options.seed,
                                      video_stride=options.video_stride, report=report)
    key = stats_key(fp32, export.preprocess, [i.key() for i in items[: options.count]], options.method)
    progress = Progress(min(options.count, len(items)), "calibrate")
    # The graph only accepts batches within its export range (a static batch exactly).
    batch_size = min(options.batch_size, export.batch[2]) if export.dynamic_batch else export.batch[0]

    def compute() -> ActivationStats:
        log(f"calibrating ({options.method}) on up to {options.count} images from {options.source}")
        batches = calibration_batches(items, export.preprocess, count=options.count, batch_size=batch_size,
                                      min_images=options.min_images, report=report, progress=progress.update)
        return compute_stats(fp32, (batch for batch, _keys in batches), method=options.method)

    stats, cached = load_or_compute_stats(key, Path(options.cache_dir), compute)
    result.stats_cached, result.report, result.stats_images = cached, report, stats.num_images
    if cached:
        log(f"reusing cached calibration statistics ({stats.num_images} images, {stats.method})")
    # ModelOpt needs one input for its calibration step; the cached statistics replace its scales.
    first_image, _keys = next(calibration_batches(items, export.preprocess, count=1, batch_size=1))
    return stats, first_image


def _finish(converted: Path, fp32: Path, output: Path, precision: str) -> None:
    """Carry the FP32 graph's metadata (plus the precision) into the converted graph; write atomically."""
    import onnx

    from retina_edge.atomic import atomic_path

    graph = onnx.load(str(converted))
    set_metadata(graph, {**read_metadata(fp32), KEY_PRECISION: precision})
    with atomic_path(output) as tmp:
        onnx.save(graph, str(tmp))
