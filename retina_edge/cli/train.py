"""``retina-edge train``: focal-loss training from a JSON config and/or flags (``torchrun`` for DDP)."""

from __future__ import annotations

import argparse
import json

from retina_edge.cli.args import non_negative_int, positive_float, positive_int

NAME = "train"
#: Model keywords other options set; repeating them in --model-options raised a TypeError.
SET_ELSEWHERE = frozenset({"num_classes", "class_names", "category_ids", "min_size", "max_size", "trainable_layers"})
HELP = "train a RetinaNet on a COCO-format dataset (single process, or DDP under torchrun)"
EXAMPLE = ("retina-edge train --data data/synth --arch resnet18_fpn --imgsz 512 --epochs 12 --out runs/r18\n"
           "  torchrun --nproc_per_node 2 -m retina_edge.cli.main train --config train.json")

# flag -> TrainConfig field, for flags whose value passes straight through.
_DIRECT = ("data", "arch", "batch_size", "epochs", "iterations", "optimizer", "lr", "momentum", "weight_decay",
           "warmup_iters", "schedule", "trainable_layers", "grad_clip", "amp", "half_weights", "workers",
           "seed", "backbone_weights", "weights", "checkpoint_every")

OUTPUT_FOLDERS = ("out_dir",)

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="JSON file of training options (flags override it)")
    parser.add_argument("--data", help="dataset folder (annotations/instances_train.json + train/) or a json")
    parser.add_argument("--out", dest="out_dir", help="output folder for checkpoints and metrics")
    parser.add_argument("--arch", help="architecture of a fresh model (default resnet18_fpn), see 'retina-edge archs'; "
                                       "with --weights only a bare state dict's (a checkpoint names its own)")
    parser.add_argument("--imgsz", type=positive_int, nargs="+", metavar="N", help="input size: N (square) or MIN MAX sides")
    parser.add_argument("--multiscale", type=positive_int, nargs="+", metavar="N", help="short sides for multi-scale training")
    parser.add_argument("--batch-size", type=positive_int)
    parser.add_argument("--epochs", type=positive_int)
    parser.add_argument("--iterations", type=positive_int, help="train for this many iterations (overrides --epochs)")
    parser.add_argument("--optimizer", choices=["sgd", "adamw"])
    parser.add_argument("--lr", type=positive_float)
    parser.add_argument("--momentum", type=float)
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--warmup-iters", type=non_negative_int)
    parser.add_argument("--schedule", choices=["cosine", "step"])
    parser.add_argument("--trainable-layers", type=int, help="ResNet stages to train, 0..5")
    parser.add_argument("--grad-clip", type=float, help="clip the gradient norm to this (0: off)")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="mixed precision: float16 on CUDA, bfloat16 on CPUs with AVX512-BF16/AMX")
    parser.add_argument("--half-weights", action=argparse.BooleanOptionalAction, default=None,
                        help="store model_final.pth's conv weights in float16 (half the file); "
                             "the final eval scores the stored weights")
    parser.add_argument("--workers", type=non_negative_int, help="data-loading processes")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--backbone-weights", help="ImageNet ResNet weights: torchvision:resnet50 or a path")
    parser.add_argument("--weights", help="fine-tune: start from this checkpoint (its architecture, widths if pruned, "
                                          "classes and weights; the data must have its classes)")
    parser.add_argument("--model-options", help='JSON of model keywords, e.g. \'{"fpn_channels": 128}\'')
    parser.add_argument("--no-eval", dest="eval_at_end", action="store_false", default=None, help="skip the final evaluation")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pth")
    parser.add_argument("--checkpoint-every", type=positive_int,
                        help="also write OUT/last.pth every N iterations (default 200; always at epoch ends and on Ctrl-C)")


def config_from_args(args: argparse.Namespace):  # noqa: ANN201
    from retina_edge.errors import RetinaEdgeError
    from retina_edge.training.train import TrainConfig

    overrides = {name: getattr(args, name) for name in _DIRECT}
    overrides.update(out_dir=args.out_dir, eval_at_end=args.eval_at_end)
    if args.imgsz:
        if len(args.imgsz) > 2:
            raise RetinaEdgeError("--imgsz takes N or MIN MAX")
        overrides.update(min_size=args.imgsz[0], max_size=args.imgsz[-1])
    if args.multiscale:
        overrides["train_min_sizes"] = tuple(args.multiscale)
    if args.model_options:
        try:
            overrides["model_options"] = json.loads(args.model_options)
        except json.JSONDecodeError as error:
            raise RetinaEdgeError(f"--model-options is not valid JSON ({error}): e.g. '{{\"fpn_channels\": 128}}'") from None
        if not isinstance(overrides["model_options"], dict):
            raise RetinaEdgeError("--model-options must be a JSON object of model keywords, e.g. '{\"fpn_channels\": 128}'")
        taken = sorted(set(overrides["model_options"]) & SET_ELSEWHERE)
        if taken:
            raise RetinaEdgeError(f"--model-options cannot set {', '.join(taken)}: the dataset gives the classes, "
                                  "--imgsz the input size and --trainable-layers the frozen layers")
    if args.config:
        return TrainConfig.from_json(args.config, **overrides)
    if not args.data:
        raise RetinaEdgeError("--data (or a --config naming it) is required")
    return TrainConfig(**{k: v for k, v in overrides.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    from retina_edge.training.train import train

    try:
        final = train(config_from_args(args), resume=args.resume)
    except KeyboardInterrupt as stop:  # the library says how to continue in its terms; here, in the flag's
        if not str(stop):
            raise
        raise KeyboardInterrupt(f"{stop} (the same command with --resume)") from None
    print(f"checkpoint: {final}")
    return 0
