"""``retina-edge qat``: quantization-aware training into the INT8 graph ``build --int8`` writes."""

from __future__ import annotations

import argparse

from retina_edge.calib.qat_targets import qat_targets
from retina_edge.cli.args import non_negative_int, positive_float, positive_int, unit_interval
from retina_edge.cli.export import add_export_arguments

NAME = "qat"
HELP = ("quantization-aware training: fine-tune with fake quantization at the INT8 recipe's Q/DQ sites, then write "
        "the same kind of graph build --int8 writes")
EXAMPLE = ("retina-edge qat --weights preset:synth --data data/preset-train --target tensorrt -o synth-int8-qat.onnx\n"
           "  retina-edge qat --weights preset:synth --data data/preset-train --target cpu -o synth-int8-cpu-qat.onnx --dry-run")

OUTPUT_SUFFIXES = {"output": (".onnx",)}
OUTPUT_FILES = ("output",)
OUTPUT_FOLDERS = ("out_dir",)
#: Library parameters -> this command's argument dests.
OPTION_DESTS = {"calibration": "calib", "count": "calib_count", "lr_factor": "lr_factor", "fraction": "fraction"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_export_arguments(parser)
    parser.add_argument("--data", required=True, help="COCO dataset folder (its train split) the model was trained on")
    parser.add_argument("--target", choices=qat_targets(), default="tensorrt",
                        help="the INT8 recipe whose placement QAT mirrors: tensorrt (ModelOpt's Q/DQ placement, "
                             "fake quantization by ModelOpt), cpu (ONNX Runtime's QDQ, by PyTorch's fake quantization), "
                             "or another INT8 recipe placed for one of those")
    parser.add_argument("--calib", help="calibration images (default: the data's train images)")
    parser.add_argument("--calib-count", type=positive_int, default=512, help="calibration images to use (default 512)")
    parser.add_argument("--calib-method", choices=["entropy", "max"], help="activation ranges (default: the recipe's, max)")
    parser.add_argument("--keep-predictors", action="store_true", help="keep the final cls_logits/bbox_reg convs in FP32")
    schedule = parser.add_argument_group("fine-tuning (defaults from NVIDIA's QAT guidance and the checkpoint's own "
                                         "training options)")
    schedule.add_argument("--iterations", type=positive_int, help="iterations (default: --fraction of the original's)")
    schedule.add_argument("--fraction", type=unit_interval, default=0.1,
                          help="fraction of the original schedule (default 0.1)")
    schedule.add_argument("--lr", type=positive_float, help="peak learning rate (default: --lr-factor of the original's), "
                                                            "cosine to 0")
    schedule.add_argument("--lr-factor", type=unit_interval, default=0.01, help="of the original learning rate (default 0.01)")
    schedule.add_argument("--batch-size", type=positive_int, help="default: the original's")
    schedule.add_argument("--bn-stats", choices=["frozen", "update"], default="frozen",
                          help="BatchNorm running statistics: frozen (default; the graph folds them in) or updated")
    schedule.add_argument("--workers", type=non_negative_int, default=0, help="data-loading processes")
    schedule.add_argument("--seed", type=int, default=0)
    schedule.add_argument("--checkpoint-every", type=positive_int, default=50, help="write OUT/last.pth every N iterations")
    parser.add_argument("--out", dest="out_dir", help="run folder: PTQ graph, statistics, checkpoints "
                                                      "(default: the output's name with .qat)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pth (with the same flags: "
                                                              "a changed one is refused)")
    parser.add_argument("--dry-run", action="store_true", help="calibrate, print the schedule and the time estimate, "
                                                               "write nothing else")
    parser.add_argument("-o", "--output", required=True, help="the INT8 graph to write (.onnx)")


def _request(args: argparse.Namespace):  # noqa: ANN202
    from pathlib import Path

    from retina_edge.calib.build import CalibrationOptions
    from retina_edge.data.coco_dataset import resolve_split
    from retina_edge.training.finetune import checkpoint_training_options
    from retina_edge.training.qat import QatOptions, QatRequest

    out_dir = args.out_dir or str(Path(args.output).with_suffix(".qat"))
    calib = args.calib or str(resolve_split(args.data, "train")[1])
    schedule = QatOptions(data=args.data, out_dir=out_dir, iterations=args.iterations, fraction=args.fraction,
                          lr=args.lr, lr_factor=args.lr_factor, batch_size=args.batch_size,
                          freeze_bn_stats=args.bn_stats == "frozen", workers=args.workers, seed=args.seed,
                          checkpoint_every=args.checkpoint_every)
    return QatRequest(target=args.target, calibration=CalibrationOptions(source=calib, count=args.calib_count,
                                                                         method=args.calib_method),
                      schedule=schedule, keep_predictors=args.keep_predictors,
                      original=checkpoint_training_options(args.weights))


def _print_plan(plan) -> None:  # noqa: ANN001 (QatPlan)
    config = plan.config
    print(f"schedule: {config.iterations} iterations of batch {config.batch_size} ({plan.epochs:.2f} epochs of "
          f"{plan.train_images} images), {config.optimizer} lr {config.lr:g} cosine to 0, no warmup, weight decay "
          f"{config.weight_decay:g}, BatchNorm statistics {'frozen' if config.freeze_bn_stats else 'updated'}, "
          f"fake quantization at {plan.sites} sites")
    print(f"estimate: {plan.step_seconds:.2f} s per iteration here, about {plan.estimate_seconds / 60:.1f} minutes of "
          "fine-tuning (plus export and a few seconds per checkpoint); calibration is cached for the run")


def run(args: argparse.Namespace) -> int:
    from retina_edge.cli.export import describe, model_and_options
    from retina_edge.training.qat import plan_qat, quantization_aware_training

    request = _request(args)
    model, options = model_and_options(args)
    if args.dry_run:
        _print_plan(plan_qat(model, export=options, request=request))
        return 0
    try:
        result = quantization_aware_training(model, args.output, export=options, request=request, resume=args.resume)
    except KeyboardInterrupt as stop:
        if not str(stop):
            raise
        raise KeyboardInterrupt(f"{stop} (the same command with --resume)") from None
    print(f"PTQ graph it started from: {result.ptq_path}")
    print(f"fine-tuned weights: {result.checkpoint}")
    print(f"wrote {describe(result.model_path, result.build.metadata)}")
    if result.build.calibration_cache:
        print(f"wrote {result.build.calibration_cache} (TensorRT <= 10 / DeepStream implicit-INT8 calibration cache)")
    print(f"QAT took {result.seconds / 60:.1f} minutes")
    return 0
