"""``retina-edge archs``: list the architectures ``build_model`` and ``--arch`` accept."""

from __future__ import annotations

import argparse

NAME = "archs"
HELP = "list the model architectures and torchvision weight names"
EXAMPLE = "retina-edge archs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    from retina_edge.model.archs import ARCHS

    print("architectures (--arch):")
    for name, arch in ARCHS.items():
        print(f"  {name:<20} {arch.description or f'{arch.backbone} + {arch.fpn} + {arch.head}'}")
    print("torchvision COCO weights (--weights):")
    for name in ("retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2"):
        print(f"  torchvision:{name}")
    return 0
