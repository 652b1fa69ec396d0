"""``retina-edge build``: export, calibrate and put FP16/INT8 precision in the graph in one command."""

from __future__ import annotations

import argparse

from retina_edge.cli.args import add_backend_argument, non_negative_int, positive_float, positive_int
from retina_edge.calib.recipes import build_targets, precisions, recipes
from retina_edge.cli.export import add_export_arguments
from retina_edge.errors import BudgetNotMetError, RetinaEdgeError

NAME = "build"
HELP = "export + calibrate + FP16/INT8 precision graph (TensorRT Q/DQ placement or CPU QDQ placement)"
EXAMPLE = ("retina-edge build --int8 --weights preset:synth --calib data/synth/val -o synth-int8.onnx\n"
           "  retina-edge build --int8 --target cpu --weights preset:synth --calib 'frames/*.jpg' -o synth-int8-cpu.onnx")

OUTPUT_SUFFIXES = {"output": (".onnx", ".engine", ".plan", ".trt")}
OUTPUT_FILES = ("output", "timing_cache")
#: Library parameters (BuildOptions, CalibrationOptions, SearchOptions) -> this command's argument dests.
OPTION_DESTS = {"calibration": "calib", "count": "calib_count", "batch_size": "calib_batch", "search": "max_ap_drop",
                "max_ap_drop": "max_ap_drop", "time_limit": "search_time_limit", "val": "val", "legacy_precision": "legacy",
                "calibration_cache": "calibration_cache", "dla_core": "dla_core"}

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_export_arguments(parser)
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--precision", choices=precisions(), default="fp32",
                           help="the precision in the graph, one of the recipe table's (see --target); default fp32")
    precision.add_argument("--int8", action="store_const", const="int8", dest="precision",
                           help="same as --precision int8: INT8 Q/DQ graph (needs --calib)")
    precision.add_argument("--fp16", action="store_const", const="fp16", dest="precision",
                           help="same as --precision fp16: FP16 graph (AutoCast)")
    parser.add_argument("--target", choices=build_targets(), default=build_targets()[0], help="placement; the recipes: "
                        + "; ".join(f"{r.precision} for {r.target}: {r.description}" for r in recipes()))
    parser.add_argument("--calib", help="calibration images: folder, COCO json, video file (every 10th frame) or glob")
    parser.add_argument("--calib-count", type=positive_int, default=512, help="calibration images to use (default 512)")
    parser.add_argument("--calib-method", choices=["entropy", "max"],
                        help="activation ranges; default: the recipe's, max (measured best on the preset, see "
                             "calib/statistics.py); entropy (ONNX Runtime's/ModelOpt's KL threshold) clips and lost "
                             "about 1.6 AP points there")
    parser.add_argument("--calib-batch", type=positive_int, default=8)
    parser.add_argument("--calib-seed", type=int, default=0, help="seed of the calibration image shuffle")
    search = parser.add_argument_group("INT8 under an AP budget")
    search.add_argument("--max-ap-drop", type=float, metavar="POINTS",
                        help="keep the fewest, most sensitive layers in higher precision (FP16 for tensorrt, FP32 for "
                             "cpu) until the upper 95%% bound of the COCO AP drop against the FP32 graph on --val (paired "
                             "bootstrap over its images) is within POINTS (0-100); says so instead when --val has too "
                             "few images to resolve POINTS; writes M.search.json and M.sensitivity.png")
    search.add_argument("--val", help="COCO dataset folder (its val split) or instances json, with annotations")
    search.add_argument("--search-time-limit", type=positive_float, metavar="SECONDS",
                        help="stop searching after this long and keep the best model found")
    parser.add_argument("--keep-predictors", action="store_true",
                        help="keep the final cls_logits/bbox_reg convs in FP32 (INT8 only)")
    add_backend_argument(parser, help_prefix="what runs the result; auto: a TensorRT engine where TensorRT is "
                                             "installed, else the ONNX model. Backends: ")
    trt = parser.add_argument_group("TensorRT engine options")
    trt.add_argument("--workspace", type=positive_float, default=4.0, help="builder workspace limit in GiB (default 4)")
    trt.add_argument("--timing-cache", help="timing cache file, read and updated (reused across builds)")
    trt.add_argument("--opt-level", type=int, default=3, choices=range(6), help="builder optimization level 0..5")
    trt.add_argument("--hardware-compatible", action="store_true", help="engine runs on any Ampere+ GPU")
    trt.add_argument("--version-compatible", action="store_true", help="engine runs on later TensorRT of the same major")
    trt.add_argument("--dla-core", type=non_negative_int, help="build for this DLA core with GPU fallback (Jetson)")
    trt.add_argument("--legacy", choices=["fp16", "int8"],
                     help="TensorRT <= 10 only: FP16/INT8 builder flags on an FP32 graph (INT8 with --calibration-cache); "
                          "deprecated by TensorRT (calibrators since 10.1, the flags since 10.12), removed in 11")
    trt.add_argument("--calibration-cache", help="legacy INT8 calibration cache (e.g. one 'build --int8' wrote)")
    parser.add_argument("-o", "--output", required=True,
                        help="file to write: model.onnx, or a TensorRT engine (.engine, .plan or .trt; the ONNX "
                             "graph is written beside it as .onnx)")


def _engine_wanted(args: argparse.Namespace) -> bool:
    """Whether to build a TensorRT engine; refused before any work when TensorRT is missing but
    asked for (``--backend tensorrt``, or an engine suffix on ``-o``)."""
    from retina_edge.contract import ENGINE_SUFFIXES, is_engine_path
    from retina_edge.errors import MissingDependencyError
    from retina_edge.export.tensorrt_build import tensorrt_available
    from retina_edge.optional import install_hint

    from retina_edge.runtime.backends import get_backend

    kind = None if args.backend == "auto" else get_backend(args.backend).file_kind
    asked = kind == "engine" or is_engine_path(args.output)
    if asked and not tensorrt_available():
        why = f"--backend {args.backend}" if kind == "engine" else f"-o {args.output} (a {'/'.join(ENGINE_SUFFIXES)} file is an engine)"
        raise MissingDependencyError("tensorrt", why, f"{install_hint('tensorrt')}; without it, write an ONNX model "
                                     "(-o model.onnx) for ONNX Runtime or OpenVINO")
    if asked and kind == "onnx":
        raise RetinaEdgeError(f"-o {args.output} is a TensorRT engine, but --backend {args.backend} was asked for")
    return asked or (args.backend == "auto" and tensorrt_available())


def _engine_settings(args: argparse.Namespace):  # noqa: ANN202
    from retina_edge.export.trt_plan import TrtBuildSettings

    return TrtBuildSettings(
        batch=tuple(args.batch), workspace_bytes=int(args.workspace * (1 << 30)), optimization_level=args.opt_level,
        timing_cache=args.timing_cache, hardware_compatible=args.hardware_compatible,
        version_compatible=args.version_compatible, dla_core=args.dla_core, legacy_precision=args.legacy,
        calibration_cache=args.calibration_cache,
    )


def _report_search(found, onnx_path, model_path) -> None:  # noqa: ANN001 (SearchResult, Path, Path)
    """The search's lines (drop with its 95% interval; or why no verdict), its sensitivity plot
    beside the model, and exit 1 (BudgetNotMetError) unless the budget was shown met."""
    from retina_edge.quality.report import sensitivity_plot

    low, high = found.ap_drop_ci95
    print(f"search: {len(found.layers_kept_high)} of {found.layers_total} layers kept in {found.high_precision}, "
          f"AP {found.ap_deployed:.2f} vs FP32 {found.ap_reference:.2f}: drop {found.ap_drop:.2f} points, 95% interval "
          f"{low:.2f} to {high:.2f} on {found.val_images} images (budget {found.max_ap_drop} on the upper bound: "
          f"{found.verdict}) in {found.seconds:.0f} s; details in {onnx_path.with_suffix('.search.json')}")
    plot = sensitivity_plot(found.sensitivity, found.trajectory, onnx_path.with_suffix(".sensitivity.png"),
                            budget=found.max_ap_drop, high=found.high_precision)
    if plot:
        print(f"wrote {plot} (per-layer sensitivity and AP along the search)")
    if found.verdict == "unresolved":
        from retina_edge.metrics.bootstrap import MIN_IMAGES

        needed = (f"about {found.images_needed} validation images would" if found.images_needed
                  else "no number of images can")
        why = (f"{found.val_images} validation images are too few for a bootstrap interval to be evidence (at least "
               f"{MIN_IMAGES})" if found.val_images < MIN_IMAGES else
               f"{found.val_images} validation images cannot resolve a budget of {found.max_ap_drop} AP points (plain "
               f"INT8's drop has a standard error of {found.int8_drop_se:.2f})")
        raise BudgetNotMetError(f"{why}; {needed}. So no model met the budget of {found.max_ap_drop} AP points; the best "
                                f"found is written as {model_path} (plain INT8, no verdict)")
    if not found.budget_met:
        raise BudgetNotMetError(f"no model met the budget of {found.max_ap_drop} AP points; the best found is "
                                f"written as {model_path}")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from retina_edge.calib.build import BuildOptions, CalibrationOptions, build_precision_graph
    from retina_edge.cli.export import describe, model_and_options
    from retina_edge.contract import is_engine_path

    engine = _engine_wanted(args)
    settings = _engine_settings(args) if engine else None
    if settings is not None:
        from retina_edge.export.tensorrt_build import check_build_request

        # before export and calibration, not after
        check_build_request(settings, args.precision, frame_graph=args.frame is not None)
    output = Path(args.output)
    onnx_path = output.with_suffix(".onnx") if is_engine_path(output) else output
    search = None
    if args.max_ap_drop is not None or args.val:
        from retina_edge.calib.search import SearchOptions

        if args.max_ap_drop is None or not args.val:
            raise RetinaEdgeError("the accuracy search needs both --max-ap-drop POINTS and --val DATA")
        search = SearchOptions(max_ap_drop=args.max_ap_drop, val=args.val, time_limit=args.search_time_limit)
    calibration = None
    if args.calib:
        calibration = CalibrationOptions(source=args.calib, count=args.calib_count, method=args.calib_method,
                                         batch_size=args.calib_batch, seed=args.calib_seed)
    model, options = model_and_options(args)
    build = BuildOptions(precision=args.precision, target=args.target, calibration=calibration,
                         keep_predictors=args.keep_predictors, search=search)
    result = build_precision_graph(model, onnx_path, export=options, build=build)
    if result.stats_cached:
        print(f"calibration: reused cached statistics of {result.stats_images} images ({result.stats_method})")
    elif result.report is not None:
        print(f"calibration: {result.report.summary()}")
    print(f"wrote {describe(result.model_path, result.metadata)}")
    if result.search is not None:
        _report_search(result.search, onnx_path, result.model_path)
    if result.calibration_cache:
        print(f"wrote {result.calibration_cache} (TensorRT <= 10 / DeepStream implicit-INT8 calibration cache)")
    if settings is not None:
        from retina_edge.export.tensorrt_build import build_engine

        engine_path = output if is_engine_path(output) else output.with_suffix(".engine")
        print(f"wrote {build_engine(result.model_path, engine_path, settings, metadata=result.metadata)} (TensorRT engine)")
    elif args.backend == "auto" and result.metadata.target != "cpu":  # a CPU graph is not for TensorRT
        print("TensorRT is not installed here, so no engine was built: the ONNX model above runs with ONNX Runtime "
              "or OpenVINO (retina-edge detect --model ...); build the engine on the target with --backend tensorrt")
    return 0
