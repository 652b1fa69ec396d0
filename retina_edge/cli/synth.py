"""``retina-edge synth``: write a synthetic COCO-format dataset (the offline stand-in for COCO)."""

from __future__ import annotations

import argparse

from retina_edge.cli.args import positive_int


NAME = "synth"
HELP = "generate a synthetic COCO-format detection dataset (JPEGs + instances_{train,val}.json)"
EXAMPLE = "retina-edge synth --out data/synth --images 1000 --seed 0"

OUTPUT_FOLDERS = ("out",)

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--images", type=positive_int, default=500, help="number of images in all (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same dataset")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="share of images in the val split")
    parser.add_argument("--sides", type=positive_int, nargs=2, metavar=("MIN", "MAX"), default=(240, 320),
                        help="image sides are drawn from MIN..MAX pixels (default 240 320)")
    parser.add_argument("--max-object", type=positive_int, default=230, help="largest object side in pixels")


def run(args: argparse.Namespace) -> int:
    import math

    from retina_edge.errors import DataError
    from retina_edge.data.synth import SynthConfig, write_dataset

    if args.sides[0] > args.sides[1]:
        raise DataError(f"--sides takes MIN MAX with MIN <= MAX, got {args.sides[0]} {args.sides[1]}")
    smallest = math.ceil(SynthConfig.min_object / 0.9)  # objects are 16 pixels or more, at most 0.9 of a side
    if args.sides[0] < smallest or args.max_object < SynthConfig.min_object:
        raise DataError(f"objects are at least {SynthConfig.min_object} pixels: --sides MIN must be at least {smallest} "
                        f"and --max-object at least {SynthConfig.min_object}, got {args.sides[0]} and {args.max_object}")
    if not 0 <= args.val_fraction < 1:
        raise DataError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    config = SynthConfig(num_images=args.images, seed=args.seed, val_fraction=args.val_fraction,
                         min_side=args.sides[0], max_side=args.sides[1], max_object=args.max_object)
    paths = write_dataset(args.out, config, progress=True)
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0
