"""``retina-edge deepstream``: a folder DeepStream runs with its stock parser (graph, nvinfer and
nvinferserver configs, labels, a deepstream-app config for N sources with the tracker on)."""

from __future__ import annotations

import argparse

from retina_edge.cli.args import non_negative_int, positive_float, positive_int

NAME = "deepstream"
HELP = "write a DeepStream folder: the graph for the stock parser, nvinfer/nvinferserver configs, a deepstream-app config"
EXAMPLE = ("retina-edge deepstream --model preset:synth -o ds --sources 4 --deepstream 7.1\n"
           "  retina-edge deepstream --model synth-int8.engine -o ds --uri rtsp://cam1/stream --uri rtsp://cam2/stream")
OUTPUT_FOLDERS = ("output",)
OPTION_DESTS = {"uris": "uri"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="a graph exported with --tail deepstream (.onnx), an engine retina-edge built from one, or "
                             "weights (checkpoint, preset:NAME, torchvision:NAME) to export with that tail")
    parser.add_argument("-o", "--output", required=True, help="folder to write (created)")
    parser.add_argument("--sources", type=positive_int, help="number of sources in the deepstream-app config "
                                                             "(default: the --uri count, else 1)")
    parser.add_argument("--uri", action="append", default=[], help="a source (file://, rtsp://; repeat per source; "
                                                                   "default: DeepStream's sample stream)")
    parser.add_argument("--batch-size", type=positive_int, help="frames per inference (default: one per source)")
    parser.add_argument("--score-thresh", type=positive_float, help="pre-cluster-threshold (default: the model's)")
    parser.add_argument("--gie-id", type=positive_int, default=1, help="gie-unique-id (default 1)")
    parser.add_argument("--dla-core", type=non_negative_int, help="run on this DLA core (Jetson modules with DLA)")
    parser.add_argument("--calibration-cache", help="legacy INT8 cache for an FP32 graph (TensorRT <= 10 only)")
    parser.add_argument("--triton-name", default="retina_edge",
                        help="--name given to 'retina-edge triton --ensemble' (the nvinferserver config serves NAME_network)")
    parser.add_argument("--triton-repo", default="model_repository",
                        help="that Triton repository's folder, relative to -o or absolute (default model_repository)")
    parser.add_argument("--replace-edited", action="store_true",
                        help="replace config files changed since retina-edge wrote them into -o (refused otherwise)")
    export = parser.add_argument_group("exporting weights")
    export.add_argument("--imgsz", type=positive_int, nargs="+", metavar="N", help="input H W (or one N); multiples of 32")
    export.add_argument("--align", choices=["top-left", "center"], default="top-left",
                        help="letterbox placement: top-left (symmetric-padding=0, default: where training padded and "
                             "Detector pads) or center (symmetric-padding=1)")
    target = parser.add_argument_group("target releases (checked: DeepStream / JetPack / TensorRT / module)")
    target.add_argument("--deepstream", help="DeepStream release, e.g. 7.1")
    target.add_argument("--jetpack", help="JetPack release, e.g. 6.2")
    target.add_argument("--tensorrt", help="TensorRT release on the device, e.g. 10.3")
    target.add_argument("--module", dest="jetson_module", help="Jetson module: agx-orin, orin-nx, orin-nano, agx-thor, t5000, t4000")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from retina_edge.deepstream.package import INFER_CONFIG, INFERSERVER_CONFIG, DeepStreamOptions, write_deepstream
    from retina_edge.deepstream.target import Target

    sources = args.sources or max(1, len(args.uri))
    options = DeepStreamOptions(
        sources=sources, uris=tuple(args.uri), batch_size=args.batch_size, score_thresh=args.score_thresh,
        gie_unique_id=args.gie_id, dla_core=args.dla_core, calibration_cache=args.calibration_cache,
        triton_repository=args.triton_repo, triton_model=args.triton_name,
        target=Target(deepstream=args.deepstream, jetpack=args.jetpack, tensorrt=args.tensorrt, module=args.jetson_module),
        replace_edited=args.replace_edited,
    )
    output = Path(args.output)
    model = _model_file(args, output, options)
    for path in write_deepstream(model, output, options):
        print(f"wrote {path}")
    print(f"run it: cd {output} && deepstream-app -c deepstream_app_config.txt   (nvinfer: {INFER_CONFIG}; "
          f"Triton: retina-edge triton --model {model} -o {output / args.triton_repo} --ensemble --name {args.triton_name}, "
          f"then {INFERSERVER_CONFIG})")
    return 0


def _model_file(args: argparse.Namespace, output, options):  # noqa: ANN001, ANN202
    """``--model`` when it is a deployed model file, else the weights exported with the deepstream tail."""
    from pathlib import Path

    from retina_edge.contract import is_engine_path

    given = Path(args.model)
    if given.suffix.lower() == ".onnx" or is_engine_path(given):
        return given
    from retina_edge.cli.export import input_size_from
    from retina_edge.export.onnx_export import ExportOptions, export_onnx
    from retina_edge.deepstream.package import check_before_export
    from retina_edge.model.checkpoints import load_model
    from retina_edge.preprocess import preprocess_for

    check_before_export(output, options)  # the releases and edited configs first, not after a 5 s export
    model = load_model(args.model)
    preprocess = preprocess_for(model.config, input_size_from(args.imgsz), align=args.align)
    batch = options.batch_size or options.sources
    output.mkdir(parents=True, exist_ok=True)
    path = output / "model.onnx"
    export_onnx(model, path, ExportOptions(preprocess=preprocess, tail="deepstream", batch=(1, batch, batch)))
    print(f"exported {path} (deepstream tail, batch 1..{batch})")
    return path
