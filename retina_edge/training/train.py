"""Focal-loss training of a RetinaNet on COCO-format data (single process or ``torchrun`` DDP).

Writes ``last.pth`` (model + optimiser + progress, for ``resume``) during training and
``model_final.pth`` (model, config, class names) at the end, both atomically, then evaluates on
the val split when there is one. Multi-process runs use ``torchrun``: NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import signal
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from retina_edge.model.archs import model_config
from retina_edge.atomic import write_text_atomic
from retina_edge.model.checkpoints import load_backbone_weights, load_model, read_checkpoint, save_checkpoint
from retina_edge.data.coco_dataset import load_coco_index, resolve_split
from retina_edge.data.detection_data import DetectionDataset, EpochSampler, collate
from retina_edge.errors import RetinaEdgeError
from retina_edge.model.retinanet import RetinaNet
from retina_edge.progress import Progress
from retina_edge.model.transform import RetinaTransform

logger = logging.getLogger(__name__)
#: The input side and architecture of a fresh model when the config gives none.
DEFAULT_SIZE = 512
DEFAULT_ARCH = "resnet18_fpn"


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; a JSON file with these keys can be given to ``retina-edge train --config``.

    ``iterations`` > 0 overrides ``epochs``. ``amp`` is mixed precision: float16 with loss scaling
    on CUDA, bfloat16 on CPUs (about 1.5x faster where the CPU has AVX512-BF16 or AMX, slower
    where it has neither). ``half_weights`` stores ``model_final.pth``'s conv weights in float16
    (half the file, for shipping); the final evaluation then scores the stored weights.
    ``train_min_sizes`` enables multi-scale training (short side drawn from it, long side capped by
    ``max_size``). ``model_options`` are torchvision-style model keywords (``fpn_channels``,
    ``backbone_width``, ``anchor_sizes``, ...). ``arch``: a fresh model's architecture (None:
    :data:`DEFAULT_ARCH`); with ``weights``, the checkpoint's own (``arch`` then only names a bare
    state dict's, and one contradicting a checkpoint is refused, as ``load_model`` does).
    """

    data: str
    out_dir: str = "runs/train"
    arch: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    #: The input's sides (None: 512, or the checkpoint's with ``weights``).
    min_size: int | None = None
    max_size: int | None = None
    train_min_sizes: tuple[int, ...] = ()
    batch_size: int = 8
    epochs: int = 12
    iterations: int = 0
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 100
    schedule: str = "cosine"
    trainable_layers: int = 5
    grad_clip: float = 0.0
    amp: bool = False
    half_weights: bool = False
    workers: int = 2
    hflip: float = 0.5
    seed: int = 0
    backbone_weights: str | None = None
    weights: str | None = None
    eval_at_end: bool = True
    log_every: int = 20
    #: last.pth is also written every this many iterations (and at each epoch's end, and on SIGINT/SIGTERM).
    checkpoint_every: int = 200
    #: BatchNorm layers keep their running statistics (eval mode) while the rest trains: fine-tuning
    #: (quantization-aware training) on batches too small or too few to re-estimate them.
    freeze_bn_stats: bool = False

    @classmethod
    def from_json(cls, path: str | os.PathLike, **overrides: Any) -> TrainConfig:
        try:
            loaded = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise RetinaEdgeError(f"cannot read the training options {path}: "
                                  f"{'not a JSON text' if isinstance(error, UnicodeDecodeError) else error}") from None
        if not isinstance(loaded, dict):
            raise RetinaEdgeError(f"{path} is a JSON {type(loaded).__name__}; training options are a JSON object")
        data = {**loaded, **{k: v for k, v in overrides.items() if v is not None}}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RetinaEdgeError(f"unknown training option(s) in {path}: {', '.join(unknown)}")
        if "train_min_sizes" in data:
            data["train_min_sizes"] = tuple(data["train_min_sizes"])
        return cls(**data)


def lr_at(iteration: int, total: int, config: TrainConfig) -> float:
    """Learning rate of ``iteration`` (0-based): linear warmup, then cosine to 0 or x0.1 steps at 2/3, 8/9."""
    warmup = min(config.warmup_iters, max(1, total // 4))
    if iteration < warmup:
        return config.lr * (0.001 + 0.999 * iteration / warmup)
    if config.schedule == "cosine":
        progress = (iteration - warmup) / max(1, total - warmup)
        return config.lr * 0.5 * (1 + math.cos(math.pi * progress))
    if config.schedule == "step":
        return config.lr * (0.1 ** sum(iteration >= total * f for f in (2 / 3, 8 / 9)))
    raise RetinaEdgeError(f"unknown schedule {config.schedule!r}; expected 'cosine' or 'step'")


def _make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    raise RetinaEdgeError(f"unknown optimizer {config.optimizer!r}; expected 'sgd' or 'adamw'")


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def build_training_model(config: TrainConfig, class_names: tuple[str, ...], category_ids: tuple[int, ...]) -> RetinaNet:
    """Fresh model for the dataset's classes, with the config's input size and options (or the
    model of ``config.weights``, which must know the dataset's classes)."""
    if config.weights:
        return _start_from_weights(config, class_names, category_ids)
    options = {"norm": "bn", **config.model_options}
    model_cfg = model_config(
        config.arch or DEFAULT_ARCH, num_classes=len(class_names), class_names=class_names, category_ids=category_ids,
        min_size=config.min_size or DEFAULT_SIZE, max_size=config.max_size or DEFAULT_SIZE,
        trainable_layers=config.trainable_layers, **options,
    )
    model = RetinaNet(model_cfg)
    if config.backbone_weights:
        load_backbone_weights(model, config.backbone_weights)
    return model


def _start_from_weights(config: TrainConfig, class_names: tuple[str, ...], category_ids: tuple[int, ...]) -> RetinaNet:
    if config.model_options or config.backbone_weights:
        raise RetinaEdgeError("weights to start from fix the architecture and its weights: drop model_options "
                              "and backbone_weights", option=("model_options", "backbone_weights"))
    sizes = {key: value for key, value in (("min_size", config.min_size), ("max_size", config.max_size)) if value}
    model = load_model(config.weights, arch=config.arch, trainable_layers=config.trainable_layers,
                       category_ids=category_ids, **sizes)
    if model.config.class_names != class_names:
        raise RetinaEdgeError(f"{config.weights} detects {', '.join(model.config.class_names)}; the dataset has "
                              f"{', '.join(class_names)}: fine-tune on data with the model's classes", option="weights")
    return model.train()


def train(config: TrainConfig, *, resume: bool = False, model: RetinaNet | None = None) -> Path:
    """Train per ``config``; returns the path of ``model_final.pth``. ``model``: fine-tune this one
    (its classes must be the data's) instead of a fresh model of ``config``'s architecture."""
    rank, world = _distributed()
    torch.manual_seed(config.seed + rank)
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    out_dir = Path(config.out_dir)
    index = _train_index(config, rank)
    model = (model if model is not None else build_training_model(config, index.class_names, index.category_ids)).to(device)
    model.transform = RetinaTransform(model.config.transform, train_min_sizes=config.train_min_sizes)
    optimizer = _make_optimizer(model, config)
    scaler = torch.amp.GradScaler("cuda", enabled=config.amp and device.type == "cuda")
    start_iteration = _resume(out_dir / "last.pth", model, optimizer, scaler) if resume else 0
    sampler, loader = _loader(index, config, rank, world)
    total = config.iterations or config.epochs * len(loader)
    run = _Run(config=config, model=model, net=torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model,
               optimizer=optimizer, scaler=scaler, sampler=sampler, loader=loader, device=device,
               autocast_dtype=_autocast_dtype(config, device), rank=rank, total=total, iteration=start_iteration,
               last=out_dir / "last.pth", progress=Progress(total, "train", enabled=rank == 0, every=config.log_every))
    if rank == 0:  # where the run writes, before it starts: not only at its end
        logger.info("training %d iterations into %s (last.pth on the way and on Ctrl-C, model_final.pth at the end)",
                    total, out_dir)
    if start_iteration and rank == 0:
        logger.info("resuming at iteration %d of %d", start_iteration, total)
    _loop(run)
    final = out_dir / "model_final.pth"
    if rank == 0:
        save_checkpoint(final, model, half_weights=config.half_weights, train_config=_plain(config),
                        iteration=run.iteration)
        if config.eval_at_end:
            _evaluate_val(load_model(str(final)).to(device) if config.half_weights else model.eval(), config, out_dir)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return final


def _train_index(config: TrainConfig, rank: int):  # noqa: ANN202 (CocoIndex)
    """The train split, refused when it has no usable box."""
    index = load_coco_index(*resolve_split(config.data, "train"))
    boxes = sum(len(img.labels) for img in index.images)
    if not boxes:
        raise RetinaEdgeError(f"{index.ann_file} has no usable boxes to train on")
    if rank == 0:
        logger.info(f"train data: {len(index.images)} images, {boxes} boxes, {len(index.class_names)} classes; "
                    f"dropped {index.dropped_degenerate} degenerate boxes, skipped {index.skipped_crowd} crowd boxes")
    return index


def _loader(index, config: TrainConfig, rank: int, world: int) -> tuple[EpochSampler, DataLoader]:  # noqa: ANN001
    dataset = DetectionDataset(index, hflip_prob=config.hflip)
    sampler = EpochSampler(len(dataset), seed=config.seed, rank=rank, world=world)
    # The loader's own generator: creating an iterator must not draw from the global RNG, whose
    # state (the multi-scale choice) is saved in last.pth and restored on resume.
    loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, collate_fn=collate,
                        num_workers=config.workers, persistent_workers=config.workers > 0, worker_init_fn=_leave_sigterm_to_main,
                        drop_last=len(dataset) > config.batch_size * world, generator=torch.Generator().manual_seed(config.seed))
    return sampler, loader


@dataclass
class _Run:
    """One training run's state, shared by its loop and steps. ``net``: ``model`` as trained
    (wrapped for distributed runs); ``iteration``: steps done; ``last``: the resumable checkpoint."""

    config: TrainConfig
    model: RetinaNet
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    sampler: EpochSampler
    loader: DataLoader
    device: torch.device
    autocast_dtype: torch.dtype | None
    rank: int
    total: int
    iteration: int
    last: Path
    progress: Progress
    smoothed: dict[str, float] = field(default_factory=dict)

    def save_last(self) -> None:
        if self.rank == 0:
            save_checkpoint(self.last, self.model, optimizer=self.optimizer.state_dict(), scaler=self.scaler.state_dict(),
                            iteration=self.iteration, rng=torch.get_rng_state(), train_config=_plain(self.config))


def _loop(run: _Run) -> None:
    """Step until ``run.total``, saving ``last.pth`` periodically and when asked to stop."""
    config, per_epoch = run.config, len(run.loader)
    run.net.train()
    if config.freeze_bn_stats:
        freeze_bn_statistics(run.model)
    with StopRequest() as stop:
        while run.iteration < run.total:  # epochs; a resumed epoch starts where the saved run stopped
            epoch, done = divmod(run.iteration, per_epoch)
            run.sampler.set_epoch(epoch, skip=done * config.batch_size)
            for images, targets in run.loader:
                _step(run, images, targets)
                if (stop.requested or run.iteration % config.checkpoint_every == 0 or run.iteration % per_epoch == 0
                        or run.iteration == run.total):
                    run.save_last()
                if stop.requested:
                    raise KeyboardInterrupt(f"{stop.requested} at iteration {run.iteration} of {run.total}; saved "
                                            f"{run.last}: continue by resuming from it")
                if run.iteration >= run.total:
                    break


def freeze_bn_statistics(model: torch.nn.Module) -> None:
    """BatchNorm layers to eval mode (running statistics used, not updated); the rest as it is."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def _step(run: _Run, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> None:
    """One optimisation step at the schedule's learning rate; logs smoothed losses."""
    config, optimizer = run.config, run.optimizer
    lr = lr_at(run.iteration, run.total, config)
    for group in optimizer.param_groups:
        group["lr"] = lr
    images = [img.to(run.device, non_blocking=True) for img in images]
    targets = [{k: v.to(run.device) for k, v in t.items()} for t in targets]
    with torch.autocast(run.device.type, dtype=run.autocast_dtype, enabled=run.autocast_dtype is not None):
        losses = run.net(images, targets)
    loss = sum(losses.values())
    if not torch.isfinite(loss):
        raise RetinaEdgeError(f"loss became {loss.item()} at iteration {run.iteration}; lower the learning rate "
                              "or clip gradients", option=("lr", "grad_clip"))
    optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if config.grad_clip > 0:
        run.scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), config.grad_clip)
    run.scaler.step(optimizer)
    run.scaler.update()
    run.iteration += 1
    for name, value in (("loss", loss), ("cls", losses["classification"]), ("box", losses["bbox_regression"])):
        run.smoothed[name] = 0.9 * run.smoothed.get(name, value.item()) + 0.1 * value.item()
    run.progress.update(run.iteration, **run.smoothed, lr=lr)


def _autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if not config.amp:
        return None
    if device.type == "cuda":
        return torch.float16
    if not _cpu_has_native_bfloat16():
        warnings.warn("amp on this CPU: it has neither AVX512-BF16 nor AMX, so bfloat16 is emulated and "
                      "training will be slower than float32; train without amp here", stacklevel=3)
    return torch.bfloat16


def _cpu_has_native_bfloat16() -> bool:
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def _plain(config: TrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _resume(path: Path, model: RetinaNet, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> int:
    """Weights, optimizer, loss-scaler and RNG state of ``path``; returns the iteration to continue at."""
    if not path.is_file():
        raise RetinaEdgeError(f"nothing to resume: {path} does not exist")
    state = read_checkpoint(path)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if state.get("rng") is not None:
        torch.set_rng_state(state["rng"])
    return int(state["iteration"])


def _leave_sigterm_to_main(_worker_id: int) -> None:
    """A SIGTERM to the process group (systemd's default) reaches the DataLoader workers too; PyTorch's
    handler there dies of it and the main process's next batch raised "DataLoader worker ... is killed
    by signal". Workers ignore it: the main process stops training, saves last.pth and ends them."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class StopRequest:
    """While active (main thread only), SIGINT and SIGTERM ask training to stop after the current
    iteration, with last.pth saved; a second SIGINT stops at once."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum: int, _frame) -> None:  # noqa: ANN001
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt(f"stopped at once by a second SIGINT; {self.requested} had asked to save first")
        self.requested = signal.Signals(signum).name
        logger.warning("%s: saving after this iteration (a second Ctrl-C stops at once)", self.requested)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _evaluate_val(model: RetinaNet, config: TrainConfig, out_dir: Path) -> None:
    from retina_edge.metrics.evaluate import coco_evaluate, predict_coco
    from retina_edge.model.reference import reference_detector

    try:
        ann_file, image_dir = resolve_split(config.data, "val")
    except RetinaEdgeError:
        logger.info("no val split found: skipping evaluation")
        return
    index = load_coco_index(ann_file, image_dir)
    device = next(model.parameters()).device
    results = predict_coco(reference_detector(model, device=device), index, category_ids=model.config.category_ids)
    metrics = coco_evaluate(ann_file, results, image_ids=[img.image_id for img in index.images])
    logger.info(metrics.table())
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics.to_dict(), indent=2))
