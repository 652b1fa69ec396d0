"""``retina-edge build``: export -> calibration -> precision graph (-> engine where TensorRT exists).

One function, :func:`build_precision_graph`, with the precision and target as data, not flags
scattered through an exporter: ``fp32`` is the exported graph, ``fp16`` its AutoCast version,
``int8`` its Q/DQ version for ``tensorrt`` (ModelOpt's placement + legacy calibration cache) or
``cpu`` (ONNX Runtime placement). The graph's :class:`~retina_edge.contract.DeploymentMetadata`
is made once, from the export options, and carried into the written file with its precision.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from retina_edge.calib.precision import convert_fp16, excluded_nodes, quantize_for_cpu, write_trt_calibration_cache
from retina_edge.calib.sources import (
    CalibrationItem,
    CalibrationReport,
    calibration_batches,
    collect_calibration_items,
    default_cache_dir,
    usable_items,
)
from retina_edge.calib.search import SearchOptions, SearchResult, ValidationSet
from retina_edge.calib.search import search as run_search
from retina_edge.calib.statistics import ActivationStats, compute_stats, load_or_compute_stats, stats_key
from retina_edge.calib.tensorrt_qdq import quantize_for_tensorrt
from retina_edge.contract import PRECISIONS, DeploymentMetadata
from retina_edge.errors import DataError, RetinaEdgeError
from retina_edge.export.onnx_export import ExportOptions, export_onnx
from retina_edge.model.retinanet import RetinaNet
from retina_edge.runtime.model_file import embed_deployment

logger = logging.getLogger(__name__)
TARGETS = ("tensorrt", "cpu")
#: NVIDIA's advice for CNNs is about 500 calibration images; fewer works, with a warning.
RECOMMENDED_IMAGES = 500


@dataclass(frozen=True)
class CalibrationOptions:
    """Where calibration images come from and how many. At least ``min(min_images, count)`` must
    decode: an explicit small ``count`` is honoured (with a warning below
    :data:`RECOMMENDED_IMAGES`), and a source that cannot give it is refused before any work."""

    source: str
    count: int = 512
    method: str = "entropy"
    batch_size: int = 8
    seed: int = 0
    video_stride: int = 10
    min_images: int = 16
    cache_dir: Path = field(default_factory=default_cache_dir)

    def __post_init__(self) -> None:
        if self.count < 1 or self.batch_size < 1:
            raise RetinaEdgeError(f"--calib-count and --calib-batch must be at least 1, got {self.count} and {self.batch_size}")


@dataclass
class BuildResult:
    model_path: Path
    metadata: DeploymentMetadata
    search: SearchResult | None = None
    calibration_cache: Path | None = None
    report: CalibrationReport | None = None
    stats_cached: bool = False
    stats_images: int = 0


def build_precision_graph(
    model: RetinaNet, output: str | os.PathLike, *, export: ExportOptions, precision: str, target: str = "tensorrt",
    calibration: CalibrationOptions | None = None, keep_predictors: bool = False, search: SearchOptions | None = None,
) -> BuildResult:
    """Write ``output``: the model as an ONNX graph in ``precision`` (for ``target`` when INT8).

    With ``search`` (INT8 only), the fewest most sensitive layers are kept in higher precision
    until COCO AP on ``search.val`` is within ``search.max_ap_drop`` points of the FP32 graph's
    (:mod:`retina_edge.calib.search`); ``M.search.json`` records it. If no count meets the
    budget, the best model found is written as ``M.best.onnx`` instead of ``M``."""
    if precision not in PRECISIONS:
        raise RetinaEdgeError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if target not in TARGETS:
        raise RetinaEdgeError(f"unknown target {target!r}; expected one of {TARGETS}")
    if precision == "int8" and calibration is None:
        raise RetinaEdgeError("INT8 needs calibration images: pass --calib (an image folder, COCO json, video or glob)")
    if search is not None and precision != "int8":
        raise RetinaEdgeError("--max-ap-drop searches INT8 graphs: add --int8")
    output = Path(output)
    report = CalibrationReport()
    items = _calibration_items(calibration, report) if precision == "int8" else []
    validation = ValidationSet(search.val) if search else None  # annotations checked before any work
    metadata = export.metadata_for(model.config).override(precision=precision,
                                                          target=target if precision == "int8" else "any")
    result = BuildResult(output, metadata, report=report if items else None)
    with tempfile.TemporaryDirectory(prefix="retina-edge-build-") as scratch:
        fp32 = export_onnx(model, Path(scratch) / "fp32.onnx", export)
        if precision == "fp32":
            shutil.copyfile(fp32, Path(scratch) / "out.onnx")
        elif precision == "fp16":
            logger.info("converting to FP16 (ModelOpt AutoCast; inputs, outputs and the decode tail stay FP32)")
            convert_fp16(fp32, Path(scratch) / "out.onnx")
        else:
            stats = _calibrate(fp32, export, calibration, items, result)
            exclude = excluded_nodes(fp32, keep_predictors=keep_predictors)
            if target == "tensorrt":
                logger.info("inserting Q/DQ nodes for TensorRT (ModelOpt's placement, per-channel weights)")
                quantize_for_tensorrt(fp32, stats, Path(scratch) / "out.onnx", exclude=exclude)
                write_trt_calibration_cache(stats, Path(scratch) / "calib.cache")  # put in place with the model
                result.calibration_cache = output.with_suffix(".calib.cache")
            else:
                logger.info("inserting QDQ nodes for CPUs (ONNX Runtime: U8 activations, S8 per-channel weights)")
                quantize_for_cpu(fp32, stats, Path(scratch) / "out.onnx", exclude=exclude)
            if search is not None:
                output = _search(Path(scratch), fp32, output, search, validation, items, export, result)
        _finish(Path(scratch) / "out.onnx", output, metadata,
                {result.calibration_cache: Path(scratch) / "calib.cache"} if result.calibration_cache else {})
    result.model_path = output
    return result


def _search(scratch: Path, fp32: Path, output: Path, options: SearchOptions, validation: ValidationSet,
            items: list[CalibrationItem], export: ExportOptions, result: BuildResult) -> Path:
    """Run the accuracy search on ``scratch/out.onnx`` (replacing it); the path the model goes to."""
    probe, _keys = next(calibration_batches(items[: options.probe_images], export.preprocess,
                                            count=options.probe_images, batch_size=options.probe_images))
    searched = scratch / "searched.onnx"
    result.search = run_search(scratch / "out.onnx", fp32, searched, options=options, probe=probe,
                               high="fp16" if result.metadata.target == "tensorrt" else "fp32", validation=validation,
                               metadata=result.metadata)
    searched.replace(scratch / "out.onnx")
    result.search.write(output.with_suffix(".search.json"))
    return output if result.search.budget_met else output.with_name(f"{output.stem}.best{output.suffix}")


def _calibration_items(options: CalibrationOptions, report: CalibrationReport) -> list[CalibrationItem]:
    """The usable calibration images, checked before anything is exported or calibrated."""
    candidates = collect_calibration_items(options.source, count=options.count, seed=options.seed,
                                           video_stride=options.video_stride, report=report)
    items = usable_items(candidates, options.count, report)
    needed = min(options.min_images, options.count)
    if len(items) < needed:
        raise DataError(f"only {len(items)} usable calibration images in {options.source} ({report.summary()}); "
                        f"at least {needed} are needed (or ask for fewer with --calib-count)")
    if len(items) < RECOMMENDED_IMAGES:
        logger.warning("calibrating on %d images; NVIDIA suggests about %d for CNNs (INT8 accuracy may suffer)",
                       len(items), RECOMMENDED_IMAGES)
    return items


def _calibrate(fp32: Path, export: ExportOptions, options: CalibrationOptions, items: list[CalibrationItem],
               result: BuildResult) -> ActivationStats:
    from retina_edge.progress import Progress

    key = stats_key(fp32, export.preprocess, [i.key() for i in items], options.method)
    progress = Progress(len(items), "calibrate")
    # The graph only accepts batches within its export range (a static batch exactly).
    batch_size = min(options.batch_size, export.batch[2]) if export.dynamic_batch else export.batch[0]

    def compute() -> ActivationStats:
        logger.info("calibrating (%s) on %d images from %s", options.method, len(items), options.source)
        batches = calibration_batches(items, export.preprocess, count=len(items), batch_size=batch_size,
                                      report=result.report, progress=progress.update)
        return compute_stats(fp32, (batch for batch, _keys in batches), method=options.method)

    stats, cached = load_or_compute_stats(key, Path(options.cache_dir), compute)
    result.stats_cached, result.stats_images = cached, stats.num_images
    if cached:
        logger.info("reusing cached calibration statistics (%d images, %s)", stats.num_images, stats.method)
    return stats


def _finish(converted: Path, output: Path, metadata: DeploymentMetadata, companions: dict[Path, Path]) -> None:
    """Write the converted graph with the build's contract embedded and its ``companions`` (target:
    staged file), all or nothing."""
    import onnx

    from retina_edge.atomic import atomic_paths
    from retina_edge.calib.shared_weights import share_identical_initializers
    from retina_edge.export.graph_weights import write_model

    graph = onnx.load(str(converted))
    merged = share_identical_initializers(graph)
    if merged:
        logger.info("merged %d duplicate initializers (weights shared by the pyramid levels)", merged)
    embed_deployment(graph, metadata)
    with atomic_paths(output, *companions) as (tmp, *others):
        write_model(graph, tmp)
        for staged, other in zip(companions.values(), others):
            shutil.copyfile(staged, other)
