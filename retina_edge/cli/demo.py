"""``retina-edge demo``: export, quantise, verify, bench and run the preset model, offline, in one go."""

from __future__ import annotations

import argparse

from retina_edge.cli.args import positive_int


NAME = "demo"
HELP = "the whole toolkit on the preset model, offline: FP32/FP16/INT8, verify, bench, video; one output folder"
EXAMPLE = "retina-edge demo --out runs/demo"

OUTPUT_FOLDERS = ("out",)

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--images", type=positive_int, default=100, help="val images to verify on (default 100)")
    parser.add_argument("--qat", type=positive_int, metavar="ITERATIONS",
                        help="also fine-tune INT8 graphs for both placements by quantization-aware training (this many "
                             "iterations on the demo's train split) and verify and bench them beside the PTQ ones")


def run(args: argparse.Namespace) -> int:
    from retina_edge.quality.demo import run_demo

    qat = None
    if args.qat:
        import functools

        from retina_edge.training.qat import demo_qat_graphs

        qat = functools.partial(demo_qat_graphs, iterations=args.qat)
    summary = run_demo(args.out, val_images=args.images, qat=qat)
    print(f"\ndone: open {summary} (reports, plots and the annotated video are beside it)")
    return 0
