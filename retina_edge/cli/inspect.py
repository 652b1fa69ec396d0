"""``retina-edge inspect``: load weights and print what they are (arch, classes, preprocessing)."""

from __future__ import annotations

import argparse
import json

from retina_edge.cli.args import positive_int

NAME = "inspect"
HELP = "load a checkpoint or torchvision weights and print its architecture, classes and settings"
EXAMPLE = "retina-edge inspect --weights torchvision:retinanet_resnet50_fpn_v2 --json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="checkpoint path, preset:NAME or torchvision:NAME")
    parser.add_argument("--arch", help="architecture of a bare state dict (read from its shapes if omitted)")
    parser.add_argument("--num-classes", type=positive_int, help="class count of a bare state dict")
    parser.add_argument("--json", action="store_true", help="print the full config as JSON")


def run(args: argparse.Namespace) -> int:
    from retina_edge.model.checkpoints import load_model

    model = load_model(args.weights, arch=args.arch, num_classes=args.num_classes)
    config = model.config
    if args.json:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    params = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    print(f"weights      {args.weights}")
    print(f"arch         {config.arch} (ResNet-{config.depth}, {config.variant}, norm {config.norm})")
    print(f"classes      {config.num_classes}: {', '.join(config.class_name(i) for i in range(min(8, config.num_classes)))}{' ...' if config.num_classes > 8 else ''}")
    print(f"parameters   {params / 1e6:.2f} M")
    print(f"transform    min_size {config.transform.min_size}, max_size {config.transform.max_size}")
    post = config.postprocess
    print(f"postprocess  score>{post.score_thresh}, top-{post.topk_candidates}/level, NMS {post.nms_thresh}, max {post.detections_per_img}")
    return 0
