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


def run(args: argparse.Namespace) -> int:
    from retina_edge.quality.demo import run_demo

    summary = run_demo(args.out, val_images=args.images)
    print(f"\ndone: open {summary} (reports, plots and the annotated video are beside it)")
    return 0
