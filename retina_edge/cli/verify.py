"""``retina-edge verify``: prove a deployed model still gives the PyTorch reference's answers."""

from __future__ import annotations

import argparse

from retina_edge.cli.args import positive_int
from retina_edge.cli.detect import add_runtime_arguments, make_detector

NAME = "verify"
HELP = "compare a deployed model with the PyTorch reference on the same inputs; exit 1 if it fails the thresholds"
EXAMPLE = ("retina-edge verify --model synth-int8.onnx --weights preset:synth --images data/synth/val "
           "--ann data/synth/annotations/instances_val.json --report out/verify-int8")

OUTPUT_FILES = ("json", "junit")
OUTPUT_FOLDERS = ("report",)
#: Checked before any model loads (cli/packages.py).
OPTION_PACKAGES = {"ann": "pycocotools"}

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_runtime_arguments(parser)
    parser.add_argument("--weights", required=True, help="the reference: checkpoint, preset:NAME or torchvision:NAME")
    parser.add_argument("--images", required=True, help="image folder")
    parser.add_argument("--ann", help="COCO instances json for these images: adds COCO AP of both and the delta")
    parser.add_argument("--count", type=positive_int, default=100, help="images to use (default 100)")
    parser.add_argument("--report", help="write report.json, report.md and plots into this folder")
    parser.add_argument("--json", help="write the report as JSON here")
    parser.add_argument("--junit", help="write the checks as JUnit XML here (one testcase per check), for CI pipelines")
    parser.add_argument("--max-delta-ap", type=float, help="allowed COCO AP drop in points (default by precision)")
    parser.add_argument("--gate", choices=["lower", "upper"],
                        help="which bound of the AP drop's 95%% interval must be within --max-delta-ap: lower (default: "
                             "fail when the images prove a larger drop) or upper (stricter: fail unless they prove the "
                             "drop is within it; needs enough images, the report says how many)")
    parser.add_argument("--min-ap-vs-reference", type=float, help="minimum AP of deployed vs reference detections")
    parser.add_argument("--max-mean-score-error", type=float, help="maximum mean score error of matched detections")
    parser.add_argument("--max-score-error", type=float, help="maximum score error of any matched pair (FP32 default 1e-3)")


def search_record(model: str) -> dict | None:
    """The ``M.search.json`` an accuracy search wrote beside ``M`` (or beside ``M.best.onnx``'s ``M``)."""
    import json
    from pathlib import Path

    path = Path(model)
    for candidate in (path.with_suffix(".search.json"), path.with_name(path.stem.removesuffix(".best") + ".search.json")):
        if candidate.is_file():
            return json.loads(candidate.read_text())
    return None


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from retina_edge.atomic import write_text_atomic
    from retina_edge.model.checkpoints import load_model
    from retina_edge.data.coco_dataset import load_images
    from retina_edge.quality.report import terminal_table, write_report
    from retina_edge.quality.verify import VerifyThresholds, check_same_model, run_verify

    overrides = {k: v for k, v in (("max_delta_ap", args.max_delta_ap), ("min_ap_vs_reference", args.min_ap_vs_reference),
                                   ("max_mean_score_error", args.max_mean_score_error),
                                   ("max_score_error", args.max_score_error), ("gate", args.gate)) if v is not None}
    VerifyThresholds.check(**overrides)  # a limit no model could be judged by is a usage error, before any work
    if not args.ann and (args.gate or args.max_delta_ap is not None):  # else a gate asked for passed, skipped unsaid
        from retina_edge.errors import RetinaEdgeError

        raise RetinaEdgeError(f"{'--gate' if args.gate else '--max-delta-ap'} judges the COCO AP drop against "
                              "annotations: give --ann (the COCO instances json of --images)")
    detector = make_detector(args)
    model = load_model(args.weights)
    check_same_model(detector.metadata.model, model.config, args.model, args.weights)
    images, image_ids = load_images(args.images, args.count, args.ann)
    thresholds = VerifyThresholds.for_precision(detector.metadata.precision, detector.metadata.target)
    thresholds = dataclasses.replace(thresholds, **overrides)
    report, reference, deployed = run_verify(detector, model, images, thresholds=thresholds,
                                             annotations=(args.ann, image_ids) if args.ann else None)
    print(terminal_table(report))
    if args.json:
        import json

        write_text_atomic(args.json, json.dumps(report.to_dict(), indent=2))
    if args.junit:
        from retina_edge.quality.report import junit_xml

        write_text_atomic(args.junit, junit_xml(report, name=args.model))
    if args.report:
        search = search_record(args.model)
        print(f"report: {write_report(report, reference, deployed, images, args.report, title=f'verify {args.model}', search=search)}")
    return 0 if report.passed else 1
