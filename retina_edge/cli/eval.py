"""``retina-edge eval``: COCO AP of a checkpoint on a COCO-format set (pycocotools)."""

from __future__ import annotations

import argparse
import json

from retina_edge.cli.args import add_backend_argument, positive_int

NAME = "eval"
HELP = "score weights on a COCO-format set: COCO AP, AP50, AP75, AP_S/M/L and per-class AP"
EXAMPLE = "retina-edge eval --weights preset:synth --data data/synth --save-json results.json"

OUTPUT_FILES = ("save_json", "metrics_json")

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True,
                        help="checkpoint, preset:NAME, torchvision:NAME, or a deployed .onnx/.engine (scored through the runtime)")
    add_backend_argument(parser, help_prefix="runtime backend for deployed models: ")
    parser.add_argument("--data", required=True, help="dataset folder (uses its val split) or an instances json")
    parser.add_argument("--split", default="val", help="split of a dataset folder (default val)")
    parser.add_argument("--images-dir", help="image folder, if not next to the json in COCO's layout")
    parser.add_argument("--save-json", help="write the COCO results JSON here")
    parser.add_argument("--metrics-json", help="write the metrics here as JSON")
    parser.add_argument("--batch-size", type=positive_int, default=4)
    parser.add_argument("--device", help="torch device for checkpoints (cpu, cuda); backend device for deployed models")


def detector_for(weights: str, *, backend: str = "auto", device: str | None = None):  # noqa: ANN201
    """(detect function, ModelConfig) for a checkpoint (PyTorch) or a deployed model (runtime)."""
    from pathlib import Path

    from retina_edge.contract import is_engine_path

    if Path(weights).suffix.lower() == ".onnx" or is_engine_path(weights):
        from retina_edge.runtime import Detector

        from retina_edge.runtime.backends import BackendOptions

        detector = Detector(weights, backend=backend, options=BackendOptions(device=device))
        return (lambda images: [d.as_tuple() for d in detector.detect(images)]), detector.metadata.model
    from retina_edge.model.checkpoints import load_model
    from retina_edge.model.reference import reference_detector

    model = load_model(weights)
    return reference_detector(model, device=device or "cpu"), model.config


def run(args: argparse.Namespace) -> int:
    from retina_edge.optional import require

    require("pycocotools", "COCO evaluation")  # before predicting every image, not after
    from retina_edge.atomic import write_text_atomic
    from retina_edge.data.coco_dataset import load_coco_index, resolve_split
    from retina_edge.metrics.bootstrap import bootstrap_intervals
    from retina_edge.metrics.evaluate import coco_evaluate, predict_coco, save_results
    from retina_edge.progress import Progress

    ann_file, image_dir = resolve_split(args.data, args.split)
    index = load_coco_index(ann_file, args.images_dir or image_dir)
    index.require_boxes(option="data")
    detect, model_config = detector_for(args.weights, backend=args.backend, device=args.device)
    progress = Progress(len(index.images), "eval")
    results = predict_coco(detect, index, category_ids=model_config.category_ids, batch_size=args.batch_size,
                           progress=lambda done, total: progress.update(done))
    if args.save_json:
        save_results(args.save_json, results)
    metrics = coco_evaluate(ann_file, results, image_ids=[img.image_id for img in index.images])
    print(metrics.table())
    intervals = bootstrap_intervals(metrics.matches)
    # In the table's scale (AP as a fraction), not in points beside it; --metrics-json keeps points, named so.
    print(f"95% intervals (bootstrap over the {len(index.images)} images, 1000 resamples): " + "  ".join(
        f"{name}={value.point / 100:.4f} [{value.low / 100:.4f}, {value.high / 100:.4f}]" for name, value in intervals.items()))
    if args.metrics_json:
        record = {**metrics.to_dict(), "ci95_points": {name: value.pair() for name, value in intervals.items()},
                  "images": len(index.images)}
        write_text_atomic(args.metrics_json, json.dumps(record, indent=2))
    return 0
