"""Quantization-aware training into the graph ``build --int8`` writes (same placement, same contract).

1. ``build --int8`` for the recipe (calibration, the PTQ graph): ``OUT/ptq.onnx``, its statistics
   in ``OUT/qat.json``;
2. fake quantization on the PyTorch model exactly at that graph's Q/DQ sites, with its scales
   (:mod:`retina_edge.calib.qat`: ModelOpt's TensorQuantizer for TensorRT, PyTorch's own for CPUs);
3. fine-tuning with the training loop (:func:`retina_edge.training.train.train`: ``OUT/last.pth``
   on the way and on SIGTERM, ``resume``, progress), BatchNorm statistics frozen;
4. the recipe's own Q/DQ placement on the fine-tuned weights (fake-quantized, so the INT8 weight
   codes are the trained ones) with the same statistics: the written graph has the PTQ graph's
   Q/DQ nodes, contract, tail and calibration cache, and every later stage takes it unchanged.

Defaults follow NVIDIA's QAT guidance (pytorch-quantization, ModelOpt): about 10% of the original
schedule, starting at 1% of its learning rate, cosine to zero, scales fixed while training; read
from the checkpoint's own training options where it has them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from retina_edge.atomic import write_text_atomic
from retina_edge.calib.build import BuildOptions, BuildResult, CalibrationOptions, build_precision_graph
from retina_edge.calib.qat import FakeQuant, attach_fake_quant, snap_weights
from retina_edge.calib.qat_sites import QuantSites, read_quant_sites
from retina_edge.calib.qat_targets import qat_backend, qat_targets
from retina_edge.calib.statistics import ActivationStats
from retina_edge.errors import RetinaEdgeError
from retina_edge.export.onnx_export import ExportOptions
from retina_edge.model.retinanet import RetinaNet
from retina_edge.training.finetune import check_classes, checkpoint_training_options, original_config, original_iterations
from retina_edge.training.train import TrainConfig, freeze_bn_statistics, train

logger = logging.getLogger(__name__)
#: Fine-tuning length and learning rate relative to the original training (NVIDIA's QAT guidance).
DEFAULT_FRACTION = 0.1
DEFAULT_LR_FACTOR = 0.01


@dataclass(frozen=True)
class QatOptions:
    """The fine-tuning. ``iterations``/``lr``/``batch_size`` None: ``fraction`` of the original
    iterations, ``lr_factor`` of its learning rate, its batch size (``original``: the model's
    training options, e.g. a checkpoint's ``train_config``; without them TrainConfig's defaults).
    ``freeze_bn_stats``: BatchNorm keeps its running statistics (the graph folds them in)."""

    data: str
    out_dir: str
    iterations: int | None = None
    fraction: float = DEFAULT_FRACTION
    lr: float | None = None
    lr_factor: float = DEFAULT_LR_FACTOR
    batch_size: int | None = None
    freeze_bn_stats: bool = True
    workers: int = 0
    seed: int = 0
    checkpoint_every: int = 50
    log_every: int = 10

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1 or not 0 < self.lr_factor <= 1:
            raise RetinaEdgeError(f"the schedule fraction and learning-rate factor must be in (0, 1], got {self.fraction} "
                                  f"and {self.lr_factor}", option=("fraction", "lr_factor"))

    def train_config(self, original: dict | None, train_images: int) -> TrainConfig:
        """The training options of the fine-tune: the original run's, scaled down (see the class docstring)."""
        base = original_config(original, self.data)
        batch = self.batch_size or base.batch_size
        iterations = self.iterations or max(1, round(self.fraction * original_iterations(base, train_images)))
        return dataclasses.replace(
            base, out_dir=self.out_dir, batch_size=batch, iterations=iterations, lr=self.lr or base.lr * self.lr_factor,
            warmup_iters=0, schedule="cosine", amp=False, half_weights=False, eval_at_end=False, workers=self.workers,
            seed=self.seed, checkpoint_every=self.checkpoint_every, log_every=self.log_every,
            freeze_bn_stats=self.freeze_bn_stats, backbone_weights=None)


@dataclass(frozen=True)
class QatRequest:
    """What to make: the INT8 recipe for ``target``, calibrated on ``calibration``, fine-tuned per ``schedule``."""

    target: str
    calibration: CalibrationOptions
    schedule: QatOptions
    keep_predictors: bool = False
    #: The model's own training options (its checkpoint's train_config), the defaults' base.
    original: dict | None = None

    def __post_init__(self) -> None:
        qat_backend(self.target)  # a recipe QAT cannot mirror is refused before any work


@dataclass
class QatResult:
    model_path: Path
    ptq_path: Path
    build: BuildResult
    config: TrainConfig
    seconds: float
    checkpoint: Path


def quantization_aware_training(model: RetinaNet, output: str | Path, *, export: ExportOptions, request: QatRequest,
                                resume: bool = False) -> QatResult:
    """Fine-tune ``model`` (in place) with fake quantization at the INT8 recipe's sites and write the
    graph to ``output``; ``resume`` continues a stopped run from ``schedule.out_dir``."""
    start = time.perf_counter()
    out_dir = Path(request.schedule.out_dir)
    stats, config = _prepare(model, export, request, resume)
    sites = read_quant_sites(out_dir / "ptq.onnx")
    fake = _attach(model, sites, qat_backend(request.target), export)
    try:
        final = train(config, resume=resume, model=model)
    finally:
        fake.remove()
    snap_weights(model, fake)
    logger.info("writing the QAT graph: the %s recipe's placement on the fine-tuned weights", request.target)
    built = build_precision_graph(model.eval(), output, export=export, build=BuildOptions(
        precision="int8", target=request.target, keep_predictors=request.keep_predictors, stats=stats))
    return QatResult(Path(built.model_path), out_dir / "ptq.onnx", built, config, time.perf_counter() - start, final)


def _prepare(model: RetinaNet, export: ExportOptions, request: QatRequest, resume: bool) -> tuple[ActivationStats, TrainConfig]:
    """The statistics and training options: made now (PTQ graph, ``qat.json``), or read back to resume."""
    out_dir = Path(request.schedule.out_dir)
    state_file = out_dir / "qat.json"
    settings = _settings(request, export)
    if resume:
        state = _read_state(state_file)
        if state["settings"] != settings:
            raise RetinaEdgeError(f"{out_dir} holds a QAT run of other settings ({_differences(state['settings'], settings)})"
                                  "; resume it with those, or start a new run in another folder")
        return ActivationStats.from_json(state["stats"]), TrainConfig(**{**state["config"], "train_min_sizes": tuple(
            state["config"]["train_min_sizes"])})
    config = request.schedule.train_config(request.original, _train_images(request.schedule.data))
    check_classes(model, config.data)
    logger.info("PTQ graph and calibration for the %s recipe (what QAT starts from)", request.target)
    ptq = build_precision_graph(model, out_dir / "ptq.onnx", export=_plain(export), build=BuildOptions(
        precision="int8", target=request.target, calibration=request.calibration, keep_predictors=request.keep_predictors))
    state = {"settings": settings, "stats": ptq.stats.to_json(), "config": json.loads(json.dumps(dataclasses.asdict(config)))}
    write_text_atomic(state_file, json.dumps(state, indent=1))
    return ptq.stats, config


def _plain(export: ExportOptions) -> ExportOptions:
    """The PTQ graph QAT reads its sites from is the plain one: a frame graph's frame steps (which
    the QAT graph gets around it when written) are no part of the network being fine-tuned."""
    return dataclasses.replace(export, frame=None)


def _settings(request: QatRequest, export: ExportOptions) -> dict:
    """What a resumed run must be given again, as ``qat.json`` holds it: all but the run folder (a
    resume reads the statistics and training options back, so a changed flag would be ignored)."""
    schedule = dataclasses.asdict(request.schedule)
    del schedule["out_dir"]
    calibration = request.calibration
    return json.loads(json.dumps({
        "target": request.target, "keep_predictors": request.keep_predictors, "export": _export_key(export),
        "schedule": schedule, "calibration": {"source": str(calibration.source), "count": calibration.count,
                                              "method": calibration.method}}))


def _differences(there: dict, here: dict) -> str:
    """``schedule.iterations 2 there, 5 here; ...``: the settings that differ, one level into each part."""
    found = []
    for key in sorted(set(there) | set(here)):
        old, new = there.get(key), here.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            found += [f"{key}.{name} {old.get(name)!r} there, {new.get(name)!r} here"
                      for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]
        elif old != new:
            found.append(f"{key} {old!r} there, {new!r} here")
    return "; ".join(found)


def _read_state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise RetinaEdgeError(f"nothing to resume: {path} is missing or damaged") from None


def _export_key(export: ExportOptions) -> dict:
    return {"preprocess": export.preprocess.to_dict(), "tail": export.tail, "batch": list(export.batch),
            "opset": export.opset}


def _train_images(data: str) -> int:
    from retina_edge.data.coco_dataset import load_coco_index, resolve_split

    return len(load_coco_index(*resolve_split(data, "train")).images)


def _attach(model: RetinaNet, sites: QuantSites, backend: str, export: ExportOptions) -> FakeQuant:
    example = torch.zeros(1, 3, export.preprocess.height, export.preprocess.width)
    fake = attach_fake_quant(model, sites, backend, example)
    logger.info("fake quantization (%s) at the graph's %d activation and %d weight sites", backend,
                len(fake.activation_keys), len(fake.weight_modules))
    return fake


@dataclass(frozen=True)
class QatPlan:
    """What a run would do: its training options, images, and the measured time per step."""

    config: TrainConfig
    train_images: int
    step_seconds: float
    sites: int

    @property
    def epochs(self) -> float:
        return self.config.iterations * self.config.batch_size / max(1, self.train_images)

    @property
    def estimate_seconds(self) -> float:
        return self.config.iterations * self.step_seconds


def plan_qat(model: RetinaNet, *, export: ExportOptions, request: QatRequest, steps: int = 3) -> QatPlan:
    """The dry run: calibrate and build the PTQ graph (cached for the run), attach fake quantization
    and time ``steps`` forward+backward passes on training batches (weights unchanged)."""
    import tempfile

    config = request.schedule.train_config(request.original, _train_images(request.schedule.data))
    check_classes(model, config.data)
    with tempfile.TemporaryDirectory(prefix="retina-edge-qat-") as scratch:
        build_precision_graph(model, Path(scratch) / "ptq.onnx", export=_plain(export), build=BuildOptions(
            precision="int8", target=request.target, calibration=request.calibration,
            keep_predictors=request.keep_predictors))
        sites = read_quant_sites(Path(scratch) / "ptq.onnx")
    fake = _attach(model, sites, qat_backend(request.target), export)
    try:
        step = _time_steps(model, config, steps)
    finally:
        fake.remove()
    return QatPlan(config, _train_images(config.data), step, len(fake.activation_keys) + len(fake.weight_modules))


def _time_steps(model: RetinaNet, config: TrainConfig, steps: int) -> float:
    """Median seconds of a training step's forward and backward (the first is warm-up) on the data's batches."""
    from retina_edge.data.coco_dataset import load_coco_index, resolve_split
    from retina_edge.data.detection_data import DetectionDataset, collate

    dataset = DetectionDataset(load_coco_index(*resolve_split(config.data, "train")), hflip_prob=config.hflip)
    model.train()
    if config.freeze_bn_stats:
        freeze_bn_statistics(model)
    times = []
    for step in range(steps + 1):
        first = step * config.batch_size  # wrapping round, as the loader's epochs do, on a split smaller than a batch too
        images, targets = collate([dataset[(first + k) % len(dataset)] for k in range(config.batch_size)])
        began = time.perf_counter()
        losses = model(images, targets)
        sum(losses.values()).backward()
        times.append(time.perf_counter() - began)
    model.zero_grad(set_to_none=True)
    model.eval()
    return sorted(times[1:])[len(times[1:]) // 2] if steps else math.nan


def demo_qat_graphs(setup, *, iterations: int) -> dict[str, Path]:  # noqa: ANN001 (quality.demo.DemoSetup)
    """The demo's QAT graphs (``synth-int8-<target>-qat``), one per INT8 recipe it builds that QAT mirrors, fine-tuned
    from the preset for ``iterations`` on the demo's train split and calibrated on its images."""
    import copy

    from retina_edge.calib.recipes import recipes

    graphs = {}
    for recipe in (r for r in recipes() if r.in_demo and r.precision == "int8" and r.target in qat_targets()):
        name = f"synth-{recipe.tag}-qat"
        logger.info("quantization-aware training for the %s placement (%d iterations)", recipe.target, iterations)
        schedule = QatOptions(data=str(setup.out / "data"), out_dir=str(setup.out / f"{name}.run"), iterations=iterations)
        request = QatRequest(target=recipe.target, calibration=setup.calibration, schedule=schedule,
                             original=checkpoint_training_options("preset:synth"))
        result = quantization_aware_training(copy.deepcopy(setup.model), setup.out / f"{name}.onnx", export=setup.export,
                                             request=request)
        graphs[name] = result.model_path
    return graphs
