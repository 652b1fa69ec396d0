"""Iterative structured pruning: prune a step, fine-tune it with the training loop, measure, repeat.

``prune(PruneConfig(weights=..., data=..., amount=0.3))`` writes, under ``out_dir``::

    prune.json            the settings (a resumed run must have the same)
    step1/pruned.pth      step 1's model right after pruning (the fine-tuning starts from it)
    step1/last.pth, step1/model_final.pth    the training loop's checkpoints (resumable, SIGTERM-safe)
    step2/ ...
    pruned.pth            the last step's fine-tuned model: a checkpoint like any other
    report.json, report.md    per step: MACs, parameters, ONNX Runtime latency as a ratio to the
                          unpruned model (interleaved in one run), val AP and its paired 95% interval
                          against the unpruned model (unresolved on fewer than MIN_IMAGES val images)

Step k removes ``amount * k / steps`` of every channel group's original channels. Fine-tuning
starts from the weights' own training recipe (optimizer, batch, augmentation, input size) when the
checkpoint carries it, at a third of its learning rate, for ``iterations`` steps; ``finetune``
overrides any training option.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retina_edge.atomic import atomic_path, write_text_atomic
from retina_edge.errors import ConfigError, RetinaEdgeError
from retina_edge.metrics.bootstrap import MIN_IMAGES
from retina_edge.model.checkpoints import load_model, save_checkpoint
from retina_edge.model.pruning import PruneOptions, amount_for_macs, prune_model
from retina_edge.model.measure import model_cost
from retina_edge.training.finetune import check_classes, checkpoint_training_options, original_config, original_iterations
from retina_edge.training.train import TrainConfig, train

logger = logging.getLogger(__name__)

DEFAULT_AMOUNT = 0.25
#: Fine-tuning per step, as a fraction of the original training's schedule. Measured on the preset
#: (bench/RESULTS.md, 2026-12-07): 150 iterations a step (8%) left a sixth of the channels 2.2 AP
#: points down; 800 (43%) brought half of them back to the unpruned model's AP.
DEFAULT_FRACTION = 0.4


@dataclass(frozen=True)
class PruneConfig:
    """``amount``: fraction of each channel group's original channels removed by the end (default
    0.25), or ``target_macs``: the fraction of the unpruned model's MACs to reach (the amount is
    searched); ``steps``: prune/fine-tune rounds; ``iterations``: fine-tuning iterations per step
    (None: :data:`DEFAULT_FRACTION` of the original training's; 0: prune only);
    ``finetune``: training options (:class:`TrainConfig` fields) over the defaults; ``latency``:
    time every step against the unpruned model on ONNX Runtime (``latency_iters`` runs each)."""

    weights: str
    data: str
    out_dir: str = "runs/prune"
    amount: float | None = None
    target_macs: float | None = None
    steps: int = 3
    round_to: int = 8
    iterations: int | None = None
    finetune: dict[str, Any] = field(default_factory=dict)
    latency: bool = True
    latency_iters: int = 30

    def __post_init__(self) -> None:
        if self.amount is not None and self.target_macs is not None:
            raise ConfigError("give a pruning amount or a MACs target, not both", option=("amount", "target_macs"))
        if self.steps < 1 or (self.iterations or 0) < 0:
            raise ConfigError("steps must be >= 1 and iterations >= 0", option=("steps", "iterations"))
        unknown = sorted(set(self.finetune) - {f.name for f in dataclasses.fields(TrainConfig)})
        if unknown or {"data", "out_dir", "weights"} & set(self.finetune):
            raise ConfigError(f"not fine-tuning options: {', '.join(unknown) or 'data, out_dir and weights are set here'}",
                              option="finetune")
        PruneOptions(self.amount or 0.0, round_to=self.round_to)  # validates both


@dataclass
class StepRow:
    """One row of the report: step 0 is the unpruned model."""

    step: int
    amount: float
    macs: int
    params: int
    macs_ratio: float
    params_ratio: float
    latency_ratio: float | None = None
    ap: float | None = None
    delta_ap: list[float] | None = None  # [point, low, high] in AP points against step 0, paired over val images
    images: int = 0
    checkpoint: str = ""


def prune(config: PruneConfig, *, resume: bool = False) -> Path:
    """Run (or, with ``resume``, continue) the schedule; returns the path of the pruned checkpoint."""
    out = Path(config.out_dir)
    settings = _claim(out, config, resume=resume)
    # Weights, data and MACs target are checked before the folder is claimed: a run refused for a
    # typo must leave nothing that refuses the corrected command.
    base = load_model(config.weights)
    if config.iterations != 0:  # the fine-tuning's data
        check_classes(base, config.data)
    amount = config.amount if config.amount is not None else DEFAULT_AMOUNT
    if config.target_macs is not None:
        amount = amount_for_macs(base, config.target_macs, PruneOptions(0.0, round_to=config.round_to))
        logger.info("pruning %.1f%% of the channels reaches %.0f%% of the MACs", 100 * amount, 100 * config.target_macs)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "prune.json", settings)
    with _Measurer(config, base) as measure:
        rows = _finished_rows(out) if resume else []
        if not rows:
            rows = [measure.row(0, 0.0, base, config.weights)]
            _write_report(out, rows)
        previous = rows[-1].checkpoint
        for step in range(len(rows), config.steps + 1):
            step_amount = round(amount * step / config.steps, 4)
            final = _pruned_and_finetuned(config, out / f"step{step}", previous, step_amount, resume=resume)
            rows.append(measure.row(step, step_amount, load_model(str(final)), str(final)))
            _write_report(out, rows)
            previous = str(final)
    result = out / "pruned.pth"
    with atomic_path(result) as tmp:
        shutil.copyfile(previous, tmp)
    return result


def _claim(out: Path, config: PruneConfig, *, resume: bool) -> str:
    """``out`` holds one run: a new run refuses a used folder, a resumed one its settings changed.
    Returns the settings (``prune.json``'s text) to write once the run is known to start."""
    settings = out / "prune.json"
    plain = json.loads(json.dumps(dataclasses.asdict(config)))
    if settings.is_file():
        if not resume:
            raise RetinaEdgeError(f"{out} already holds a pruning run: resume it, or choose another output folder",
                                  option="out_dir")
        if json.loads(settings.read_text()) != plain:
            raise RetinaEdgeError(f"{out} was pruned with other settings ({settings}): resume it with the same ones")
    elif resume:
        raise RetinaEdgeError(f"nothing to resume: {settings} does not exist")
    return json.dumps(plain, indent=2)


def _finished_rows(out: Path) -> list[StepRow]:
    report = out / "report.json"
    if not report.is_file():
        return []
    return [StepRow(**row) for row in json.loads(report.read_text())["steps"]]


def _pruned_and_finetuned(config: PruneConfig, step_dir: Path, previous: str, amount: float, *, resume: bool) -> Path:
    """Step ``step_dir``: prune ``previous`` to ``amount`` (unless a resumed run did), fine-tune it."""
    pruned = step_dir / "pruned.pth"
    if not (resume and pruned.is_file()):
        model = load_model(previous)
        groups = prune_model(model, PruneOptions(amount, round_to=config.round_to))
        logger.info("%s: pruned %d channel groups to %.0f%% of their channels", step_dir.name, len(groups),
                    100 * (1 - amount))
        save_checkpoint(pruned, model, pruned_from=previous, prune_amount=amount)
    if config.iterations == 0:
        return pruned
    train_config = finetune_config(config, pruned, step_dir)
    return train(train_config, resume=resume and (step_dir / "last.pth").is_file())


def finetune_config(config: PruneConfig, start: Path, out_dir: Path) -> TrainConfig:
    """The fine-tuning of one step: the weights' training recipe (where the checkpoint has it) at a
    third of its learning rate, ``config.iterations`` long (or :data:`DEFAULT_FRACTION` of the
    original's), then ``config.finetune``'s options."""
    from retina_edge.data.coco_dataset import load_coco_index, resolve_split

    base = original_config(checkpoint_training_options(config.weights), config.data)
    iterations = config.iterations
    if iterations is None:
        train_images = len(load_coco_index(*resolve_split(config.data, "train")).images)
        iterations = max(1, round(DEFAULT_FRACTION * original_iterations(base, train_images)))
    schedule = {"lr": base.lr / 3, "iterations": iterations, "warmup_iters": min(50, iterations // 10),
                "schedule": "cosine", "eval_at_end": False, "checkpoint_every": 100, "log_every": 50}
    return dataclasses.replace(base, out_dir=str(out_dir), weights=str(start), **{**schedule, **config.finetune})


class _Measurer:
    """Costs, ONNX Runtime latency against the unpruned model (interleaved) and val AP paired with
    the unpruned model's, for each step's model."""

    def __init__(self, config: PruneConfig, base) -> None:  # noqa: ANN001 (RetinaNet)
        self.config, self.base = config, base
        self.base_cost = model_cost(base.config)
        self.tmp = Path(tempfile.mkdtemp(prefix="retina-edge-prune-"))
        self.val = _val_split(config.data)
        self.base_matches = None
        self.base_backend = None

    def __enter__(self) -> _Measurer:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def row(self, step: int, amount: float, model, checkpoint: str) -> StepRow:  # noqa: ANN001
        cost = model_cost(model.config)
        macs_ratio, params_ratio = cost.ratio_to(self.base_cost)
        row = StepRow(step, amount, cost.macs, cost.params, macs_ratio, params_ratio, checkpoint=checkpoint)
        if self.config.latency:
            row.latency_ratio = 1.0 if step == 0 else self._latency_ratio(model)
        if self.val is not None:
            self._score(row, model)
        logger.info("step %d: %s", step, _row_text(row))
        return row

    def _latency_ratio(self, model) -> float:  # noqa: ANN001
        if self.base_backend is None:
            self.base_backend = _onnx_backend(self.base, self.tmp / "unpruned.onnx")
        backend = _onnx_backend(model, self.tmp / "pruned.onnx")
        return interleaved_latency_ratio(self.base_backend, backend, self.base.config, iterations=self.config.latency_iters)

    def _score(self, row: StepRow, model) -> None:  # noqa: ANN001
        from retina_edge.metrics.bootstrap import paired_bootstrap

        metrics, images = _val_metrics(model, *self.val)
        row.ap, row.images = 100 * metrics.summary["AP"], images
        if self.base_matches is None:
            self.base_matches = metrics.matches if row.step == 0 else _val_metrics(self.base, *self.val)[0].matches
        if row.step:
            delta = paired_bootstrap(self.base_matches, metrics.matches).delta["AP"]
            row.delta_ap = [delta.point, delta.low, delta.high]


def _val_split(data: str) -> tuple[str, str] | None:
    from retina_edge.data.coco_dataset import resolve_split

    try:
        return tuple(map(str, resolve_split(data, "val")))
    except RetinaEdgeError:
        logger.info("no val split in %s: the report has no AP", data)
        return None


def _val_metrics(model, ann_file: str, image_dir: str):  # noqa: ANN001, ANN202 (CocoMetrics, int)
    from retina_edge.data.coco_dataset import load_coco_index
    from retina_edge.metrics.evaluate import coco_evaluate, predict_coco
    from retina_edge.model.reference import reference_detector

    index = load_coco_index(ann_file, image_dir)
    results = predict_coco(reference_detector(model), index, category_ids=model.config.category_ids)
    return coco_evaluate(ann_file, results, image_ids=[img.image_id for img in index.images]), len(index.images)


def _row_text(row: StepRow) -> str:
    parts = [f"amount {row.amount:.3f}", f"MACs {row.macs / 1e9:.3f} G ({row.macs_ratio:.2f}x)",
             f"params {row.params / 1e6:.2f} M ({row.params_ratio:.2f}x)"]
    if row.latency_ratio is not None:
        parts.append(f"latency {row.latency_ratio:.2f}x")
    if row.ap is not None:
        parts.append(f"AP {row.ap:.2f}")
    if row.delta_ap is not None:
        parts.append(f"dAP {_delta_text(row)}")
    return ", ".join(parts)


def _delta_text(row: StepRow) -> str:
    """dAP and its 95% interval; below MIN_IMAGES val images the point alone, unresolved: an interval
    over so few covers the truth far less often than 95% (metrics/bootstrap.py), so it is no evidence."""
    point, low, high = row.delta_ap
    if row.images < MIN_IMAGES:
        return f"{point:+.2f} (unresolved: {row.images} < {MIN_IMAGES} images)"
    return f"{point:+.2f} [{low:+.2f}, {high:+.2f}]"


def _write_report(out: Path, rows: list[StepRow]) -> None:
    write_text_atomic(out / "report.json", json.dumps({"steps": [dataclasses.asdict(r) for r in rows]}, indent=2))
    write_text_atomic(out / "report.md", report_table(rows))


def report_table(rows: list[StepRow]) -> str:
    """The report as a Markdown table (latency: ONNX Runtime FP32 on this machine, median of
    interleaved runs, as a ratio to the unpruned model; dAP: AP points against it, 95% paired interval)."""
    lines = ["| step | amount | GMACs | MACs | params (M) | params | latency | val AP | dAP [95%] |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        latency = "-" if r.latency_ratio is None else f"{r.latency_ratio:.2f}x"
        ap = "-" if r.ap is None else f"{r.ap:.2f}"
        delta = "-" if r.delta_ap is None else _delta_text(r)
        lines.append(f"| {r.step} | {r.amount:.3f} | {r.macs / 1e9:.3f} | {r.macs_ratio:.2f}x | {r.params / 1e6:.2f} | "
                     f"{r.params_ratio:.2f}x | {latency} | {ap} | {delta} |")
    images = next((r.images for r in rows if r.images), 0)
    few = (f" Fewer than {MIN_IMAGES}: too few for a 95% interval to be evidence, so each dAP is unresolved (a val "
           f"split of at least {MIN_IMAGES} images resolves it).") if 0 < images < MIN_IMAGES else ""
    return "\n".join(lines) + (f"\n\nval AP on {images} images.{few}\n" if images else "\n")


def _onnx_backend(model, path: Path):  # noqa: ANN001, ANN202 (RetinaNet -> OnnxRuntimeBackend)
    from retina_edge.export.onnx_export import ExportOptions, export_onnx
    from retina_edge.preprocess import preprocess_for
    from retina_edge.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    options = ExportOptions(preprocess=preprocess_for(model.config), tail="none", batch=(1, 1, 1))
    return OnnxRuntimeBackend(export_onnx(model, path, options))


def interleaved_latency_ratio(reference, candidate, config, *, iterations: int, warmup: int = 3) -> float:  # noqa: ANN001
    """Median latency of ``candidate`` over ``reference`` (backends with ``run(batch)``), one image
    at ``config``'s input size, each timed run after the other's, cores settled in between."""
    import time

    from retina_edge.preprocess import preprocess_for
    from retina_edge.resources import let_cores_settle

    preprocess = preprocess_for(config)
    batch = np.random.default_rng(0).standard_normal((1, 3, preprocess.height, preprocess.width)).astype(np.float32)
    times: tuple[list[float], list[float]] = ([], [])
    for iteration in range(warmup + iterations):
        for backend, samples in zip((reference, candidate), times):
            let_cores_settle()
            start = time.perf_counter()
            backend.run(batch)
            if iteration >= warmup:
                samples.append(time.perf_counter() - start)
    return float(np.median(times[1]) / np.median(times[0]))
