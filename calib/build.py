"""``retina-edge build``: export -> calibration -> precision graph (-> engine where TensorRT exists).

One function, :func:`build_precision_graph`, with the precision and target as data: the
:mod:`~retina_edge.calib.recipes` table says how each (precision, target) graph is made from the
FP32 export (``fp32`` as it is, ``fp16`` by AutoCast, ``int8`` by Q/DQ placement for ``tensorrt``
or ``cpu``). The graph's :class:`~retina_edge.contract.DeploymentMetadata` is made once, from the
export options, and carried into the written file with its precision.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from retina_edge.calib.precision import excluded_nodes
from retina_edge.calib.recipes import ConvertInputs, Recipe, get_recipe
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
from retina_edge.contract import DeploymentMetadata
from retina_edge.errors import DataError, RetinaEdgeError
from retina_edge.export.onnx_export import ExportOptions, export_onnx
from retina_edge.model.retinanet import RetinaNet
from retina_edge.runtime.core.model_file import embed_deployment

logger = logging.getLogger(__name__)
#: NVIDIA's advice for CNNs is about 500 calibration images; fewer works, with a warning.
RECOMMENDED_IMAGES = 500


@dataclass(frozen=True)
class CalibrationOptions:
    """Where calibration images come from and how many. At least ``min(min_images, count)`` must
    decode: an explicit small ``count`` is honoured (with a warning below
    :data:`RECOMMENDED_IMAGES`), and a source that cannot give it is refused before any work."""

    source: str
    count: int = 512
    #: entropy or max; None: the recipe's default (max: calib/statistics.py says why entropy clips).
    method: str | None = None
    batch_size: int = 8
    seed: int = 0
    video_stride: int = 10
    min_images: int = 16
    cache_dir: Path = field(default_factory=default_cache_dir)

    def __post_init__(self) -> None:
        if self.count < 1 or self.batch_size < 1:
            raise RetinaEdgeError(f"the calibration image count and batch size must be at least 1, got {self.count} and "
                                  f"{self.batch_size}", option=("count", "batch_size"))


@dataclass
class BuildResult:
    model_path: Path
    metadata: DeploymentMetadata
    search: SearchResult | None = None
    calibration_cache: Path | None = None
    report: CalibrationReport | None = None
    stats_cached: bool = False
    stats_images: int = 0
    stats_method: str = ""
    #: The activation statistics the graph was made with (calibrated recipes).
    stats: ActivationStats | None = None


@dataclass(frozen=True)
class BuildOptions:
    """What :func:`build_precision_graph` makes: the recipe (``precision``, ``target``; see
    :mod:`~retina_edge.calib.recipes`), its ``calibration`` images (calibrated recipes),
    ``keep_predictors`` (keep the final cls_logits/bbox_reg convs in FP32) and an accuracy
    ``search`` (recipes with a search precision)."""

    precision: str = "fp32"
    target: str = "tensorrt"
    calibration: CalibrationOptions | None = None
    keep_predictors: bool = False
    search: SearchOptions | None = None
    #: Statistics to make the graph with instead of calibrating (QAT: the ranges it trained with).
    stats: ActivationStats | None = None

    def recipe(self) -> Recipe:
        """The recipe, once the request is checked against it (before any work)."""
        recipe = get_recipe(self.precision, self.target)
        if recipe.calibrated and self.calibration is None and self.stats is None:
            raise RetinaEdgeError(f"{recipe.precision.upper()} needs calibration images (an image folder, COCO json, "
                                  f"video or glob) for the {recipe.target} placement", option="calibration")
        if self.search is not None and self.stats is not None:
            raise RetinaEdgeError("the accuracy search calibrates its own graphs; it takes no given statistics",
                                  option=("search", "stats"))
        if self.search is not None and recipe.search_high is None:
            raise RetinaEdgeError(f"the accuracy search keeps layers of a quantized graph in higher precision; "
                                  f"{recipe.precision} has none to keep", option=("search", "precision"))
        return recipe


def build_precision_graph(model: RetinaNet, output: str | os.PathLike, *, export: ExportOptions,
                          build: BuildOptions) -> BuildResult:
    """Write ``output``: the model as an ONNX graph made by ``build``'s recipe.

    With ``build.search``, the fewest most sensitive layers are kept in higher precision
    until COCO AP on ``search.val`` is within ``search.max_ap_drop`` points of the FP32 graph's
    (:mod:`retina_edge.calib.search`); ``M.search.json`` records it. If no count meets the
    budget, the best model found is written as ``M.best.onnx`` instead of ``M``."""
    recipe = build.recipe()
    output = Path(output)
    report = CalibrationReport()
    items = _calibration_items(build.calibration, report) if recipe.calibrated and build.stats is None else []
    validation = ValidationSet(build.search.val) if build.search else None  # annotations checked before any work
    metadata = export.metadata_for(model.config).override(precision=recipe.precision, target=recipe.graph_target)
    result = BuildResult(output, metadata, report=report if items else None)
    with tempfile.TemporaryDirectory(prefix="retina-edge-build-") as scratch:
        # A frame graph is the recipe's graph with the frame steps put around it at the end
        # (_finish): no recipe sees them, and calibration runs the plain graph on the host's preprocessing.
        fp32 = export_onnx(model, Path(scratch) / "fp32.onnx", dataclasses.replace(export, frame=None))
        stats = build.stats
        if recipe.calibrated and stats is None:
            stats = _calibrate(fp32, export, build.calibration, recipe, items, result)
        result.stats = stats
        inputs = ConvertInputs(fp32=fp32, output=Path(scratch) / "out.onnx", stats=stats,
                               exclude=tuple(excluded_nodes(fp32, keep_predictors=build.keep_predictors)))
        staged_cache = recipe.convert(inputs)
        if staged_cache and metadata.frame is not None:  # its tensor names are the plain graph's
            logger.info("no legacy calibration cache for a frame graph: TensorRT builds it from its Q/DQ nodes")
            staged_cache = None
        result.calibration_cache = output.with_suffix(".calib.cache") if staged_cache else None
        if build.search is not None:
            output = _search(Path(scratch), fp32, output, recipe, build.search, validation, items, export, result)
        _finish(Path(scratch) / "out.onnx", output, metadata,
                {result.calibration_cache: staged_cache} if staged_cache else {})
    result.model_path = output
    return result


def _search(scratch: Path, fp32: Path, output: Path, recipe: Recipe, options: SearchOptions, validation: ValidationSet,
            items: list[CalibrationItem], export: ExportOptions, result: BuildResult) -> Path:
    """Run the accuracy search on ``scratch/out.onnx`` (replacing it); the path the model goes to."""
    probe, _keys = next(calibration_batches(items[: options.probe_images], export.preprocess,
                                            count=options.probe_images, batch_size=options.probe_images))
    searched = scratch / "searched.onnx"
    result.search = run_search(scratch / "out.onnx", fp32, searched, options=options, probe=probe,
                               high=recipe.search_high, validation=validation,
                               metadata=result.metadata.without_frame())
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
                        f"at least {needed} are needed (or ask for fewer)", option="count")
    if len(items) < RECOMMENDED_IMAGES:
        logger.warning("calibrating on %d images; NVIDIA suggests about %d for CNNs (INT8 accuracy may suffer)",
                       len(items), RECOMMENDED_IMAGES)
    return items


def _calibrate(fp32: Path, export: ExportOptions, options: CalibrationOptions, recipe: Recipe, items: list[CalibrationItem],
               result: BuildResult) -> ActivationStats:
    from retina_edge.progress import Progress

    method = options.method or recipe.calibration_method
    key = stats_key(fp32, export.preprocess, [i.key() for i in items], method)
    progress = Progress(len(items), "calibrate")
    # The graph only accepts batches within its export range (a static batch exactly).
    batch_size = min(options.batch_size, export.batch[2]) if export.dynamic_batch else export.batch[0]

    def compute() -> ActivationStats:
        logger.info("calibrating (%s) on %d images from %s", method, len(items), options.source)
        batches = calibration_batches(items, export.preprocess, count=len(items), batch_size=batch_size,
                                      report=result.report, progress=progress.update)
        return compute_stats(fp32, (batch for batch, _keys in batches), method=method)

    stats, cached = load_or_compute_stats(key, Path(options.cache_dir), compute)
    result.stats_cached, result.stats_images, result.stats_method = cached, stats.num_images, stats.method
    if cached:
        logger.info("reusing cached calibration statistics (%d images, %s)", stats.num_images, stats.method)
    return stats


def _finish(converted: Path, output: Path, metadata: DeploymentMetadata, companions: dict[Path, Path]) -> None:
    """Write the converted graph (in its frame steps, for a frame graph) with the build's contract
    embedded and its ``companions`` (target: staged file), all or nothing."""
    import onnx

    from retina_edge.atomic import atomic_paths
    from retina_edge.calib.shared_weights import share_identical_initializers
    from retina_edge.export.graph_weights import write_model

    graph = onnx.load(str(converted))
    merged = share_identical_initializers(graph)
    if merged:
        logger.info("merged %d duplicate initializers (weights shared by the pyramid levels)", merged)
    if metadata.frame is not None:
        from retina_edge.export.frame_graph import wrap_frame

        wrap_frame(graph, metadata)
    embed_deployment(graph, metadata)
    with atomic_paths(output, *companions) as (tmp, *others):
        write_model(graph, tmp)
        for staged, other in zip(companions.values(), others):
            shutil.copyfile(staged, other)
