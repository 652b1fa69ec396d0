"""``retina-edge prune``: structured channel pruning, fine-tuned step by step with the training loop."""

from __future__ import annotations

import argparse
import json

from retina_edge.cli.args import non_negative_int, positive_int, unit_interval

NAME = "prune"
HELP = ("remove channels (backbone, FPN, shared head) and fine-tune, in steps: a smaller, faster checkpoint "
        "that every command takes as --weights; reports MACs, parameters, latency and val AP per step")
EXAMPLE = ("retina-edge prune --weights preset:synth --data data/synth --amount 0.3 --out runs/prune\n"
           "  retina-edge prune --weights model.pth --data data/coco --target-macs 0.5 --steps 4 --iterations 2000 "
           "--finetune '{\"lr\": 0.002}' --out runs/prune")

OUTPUT_FOLDERS = ("out_dir",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="checkpoint to prune (preset:NAME, a path, torchvision:NAME)")
    parser.add_argument("--data", required=True, help="COCO-format dataset to fine-tune on (train split; val for the report)")
    parser.add_argument("--out", dest="out_dir", default="runs/prune", help="output folder (default runs/prune)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--amount", type=_amount, help="fraction of every channel group's channels to remove "
                                                       "by the last step (default 0.25)")
    target.add_argument("--target-macs", type=unit_interval, metavar="FRACTION",
                        help="instead: reach this fraction of the unpruned model's MACs (the amount is searched)")
    parser.add_argument("--steps", type=positive_int, default=3, help="prune/fine-tune rounds (default 3)")
    parser.add_argument("--iterations", type=non_negative_int,
                        help="fine-tuning iterations per step (default: 40%% of the weights' original training, "
                             "740 for preset:synth; 0: prune only)")
    parser.add_argument("--round-to", type=positive_int, default=8, help="kept channels are multiples of this (default 8)")
    parser.add_argument("--finetune", help='JSON of training options for the fine-tuning, e.g. \'{"lr": 0.001, '
                                           '"batch_size": 16}\' (default: the weights\' own recipe at a third of its lr)')
    parser.add_argument("--no-latency", dest="latency", action="store_false",
                        help="skip timing each step against the unpruned model on ONNX Runtime")
    parser.add_argument("--latency-iters", type=positive_int, default=30,
                        help="timed runs of each model per step, interleaved (default 30)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out (after Ctrl-C or SIGTERM)")


def _amount(text: str) -> float:
    value = unit_interval(text)
    if value >= 1.0:
        raise argparse.ArgumentTypeError(f"must be below 1 (the fraction of channels removed), got {text}")
    return value


def config_from_args(args: argparse.Namespace):  # noqa: ANN201 (PruneConfig)
    from retina_edge.errors import RetinaEdgeError
    from retina_edge.training.prune import PruneConfig

    finetune = {}
    if args.finetune:
        try:
            finetune = json.loads(args.finetune)
        except json.JSONDecodeError as error:
            raise RetinaEdgeError(f"--finetune is not valid JSON ({error}): e.g. '{{\"lr\": 0.001}}'") from None
        if not isinstance(finetune, dict):
            raise RetinaEdgeError("--finetune must be a JSON object of training options, e.g. '{\"lr\": 0.001}'")
    return PruneConfig(weights=args.weights, data=args.data, out_dir=args.out_dir, amount=args.amount,
                       target_macs=args.target_macs, steps=args.steps, iterations=args.iterations,
                       round_to=args.round_to, finetune=finetune, latency=args.latency,
                       latency_iters=args.latency_iters)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from retina_edge.training.prune import prune

    try:
        result = prune(config_from_args(args), resume=args.resume)
    except KeyboardInterrupt as stop:  # the training loop says what it saved; here, how to go on
        raise KeyboardInterrupt(f"{stop} (the same command with --resume)" if str(stop) else
                                "the same command with --resume continues") from None
    print((Path(args.out_dir) / "report.md").read_text(), end="")
    print(f"pruned checkpoint: {result}")
    return 0
