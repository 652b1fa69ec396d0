"""``retina-edge inspect``: load weights and print what they are (arch, classes, preprocessing)."""

from __future__ import annotations

import argparse
import json

from retina_edge.cli.args import positive_int
from retina_edge.cli.export import input_size_from

NAME = "inspect"
HELP = ("load a checkpoint or torchvision weights and print its architecture, classes, settings, parameters and "
        "MACs (a pruned one: its layer widths beside the unpruned architecture's)")
EXAMPLE = "retina-edge inspect --weights torchvision:retinanet_resnet50_fpn_v2 --json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="checkpoint path, preset:NAME or torchvision:NAME")
    parser.add_argument("--arch", help="architecture of a bare state dict (read from its shapes if omitted)")
    parser.add_argument("--num-classes", type=positive_int, help="class count of a bare state dict")
    parser.add_argument("--json", action="store_true", help="print the full config as JSON")
    parser.add_argument("--imgsz", type=positive_int, nargs="+", metavar="N",
                        help="input H W (or one N) the MACs are counted at (default: the model's max_size square)")


def run(args: argparse.Namespace) -> int:
    from retina_edge.model.checkpoints import load_model

    model = load_model(args.weights, arch=args.arch, num_classes=args.num_classes)
    config = model.config
    if args.json:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    print(f"weights      {args.weights}")
    print(f"arch         {config.arch} (ResNet-{config.depth}, {config.variant}, norm {config.norm})")
    print(f"classes      {config.num_classes}: {', '.join(config.class_name(i) for i in range(min(8, config.num_classes)))}{' ...' if config.num_classes > 8 else ''}")
    _print_costs(config, input_size_from(args.imgsz))
    print(f"transform    min_size {config.transform.min_size}, max_size {config.transform.max_size}")
    post = config.postprocess
    print(f"postprocess  score>{post.score_thresh}, top-{post.topk_candidates}/level, NMS {post.nms_thresh}, max {post.detections_per_img}")
    _print_widths(config)
    return 0


def _print_costs(config, input_size: tuple[int, int] | None) -> None:  # noqa: ANN001 (ModelConfig)
    """Parameters and MACs, beside the unpruned architecture's for a pruned model."""
    import dataclasses

    from retina_edge.config import LayerWidths
    from retina_edge.model.widths import model_cost

    cost = model_cost(config, input_size)
    size = "x".join(map(str, cost.input_size))
    if not config.widths:
        print(f"parameters   {cost.params / 1e6:.2f} M")
        print(f"MACs         {cost.macs / 1e9:.3f} G at {size}")
        return
    full = model_cost(dataclasses.replace(config, widths=LayerWidths()), input_size)
    macs, params = cost.ratio_to(full)
    print(f"parameters   {cost.params / 1e6:.2f} M ({params:.2f}x the unpruned {full.params / 1e6:.2f} M)")
    print(f"MACs         {cost.macs / 1e9:.3f} G at {size} ({macs:.2f}x the unpruned {full.macs / 1e9:.3f} G)")


def _print_widths(config) -> None:  # noqa: ANN001 (ModelConfig)
    from retina_edge.model.widths import width_rows

    if not config.widths:
        print("widths       the architecture's (not pruned)")
        return
    rows = width_rows(config)
    print(f"widths       {config.widths}; convs as in -> out channels, unpruned and pruned:")
    width = max(len(name) for name, _, _ in rows)
    for name, original, pruned in rows:
        print(f"  {name:<{width}}  {original:>11}  {pruned:>11}")
