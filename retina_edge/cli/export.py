"""``retina-edge export``: PyTorch weights -> ONNX with the I/O contract and metadata inside."""

from __future__ import annotations

import argparse

from retina_edge.cli.args import positive_int
from retina_edge.contract import TAILS


NAME = "export"
HELP = "export weights to ONNX (fixed input size, dynamic batch, decode/NMS in the graph, metadata inside)"
EXAMPLE = ("retina-edge export --weights preset:synth --imgsz 256 256 --batch 1 1 8 -o synth.onnx\n"
           "  retina-edge export --weights preset:synth --frame 1280x720 -o synth-720p.onnx   (camera frames in, "
           "detections in frame pixels out)")

OUTPUT_SUFFIXES = {"output": (".onnx",)}
OUTPUT_FILES = ("output",)

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_export_arguments(parser)
    parser.add_argument("-o", "--output", required=True, help="ONNX file to write")


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Weights and graph options shared by ``export`` and ``build``."""
    parser.add_argument("--weights", required=True, help="checkpoint, preset:NAME, torchvision:NAME or a bare state dict")
    parser.add_argument("--arch", help="architecture of a bare state dict (read from its shapes if omitted)")
    parser.add_argument("--num-classes", type=positive_int, help="class count of a bare state dict")
    parser.add_argument("--imgsz", type=positive_int, nargs="+", metavar="N", help="input H W (or one N for square); multiples of 32")
    parser.add_argument("--batch", type=positive_int, nargs=3, metavar=("MIN", "OPT", "MAX"), default=(1, 1, 8),
                        help="batch range; MIN == MAX exports a static batch (default 1 1 8)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--tail", "--postprocess", dest="tail", choices=TAILS.names(),
                        help="what the graph computes after the network: "
                             + "; ".join(f"{spec.name} ({spec.description})" for spec in TAILS.values())
                             + "; default decode (nms with --frame)")
    parser.add_argument("--nms", dest="tail", action="store_const", const="nms", help="same as --tail nms")
    parser.add_argument("--resize", action="store_true", help="stretch to the input size instead of letterboxing")
    parser.add_argument("--align", choices=["top-left", "center"], default="top-left", help="letterbox placement")
    parser.add_argument("--no-simplify", action="store_true", help="skip onnxsim/onnxslim")
    frame = parser.add_argument_group("frame graph: camera frames in, detections in frame pixels out")
    frame.add_argument("--frame", type=frame_size, metavar="WxH",
                       help="the graph takes uint8 (N, H, W, 3) camera frames of this size (e.g. 1280x720) and "
                            "letterboxes, reorders and normalises them itself; its boxes come out in frame pixels, "
                            "clipped (needs a detections tail: nms, the default here, or deepstream); frames of "
                            "another size are refused")
    order = frame.add_mutually_exclusive_group()
    order.add_argument("--bgr", dest="frame_channels", action="store_const", const="bgr",
                       help="--frame: frames in BGR order, as OpenCV and most drivers give them (the default)")
    order.add_argument("--rgb", dest="frame_channels", action="store_const", const="rgb",
                       help="--frame: frames in RGB order")


def input_size_from(args_imgsz: list[int] | None) -> tuple[int, int] | None:
    """(H, W) from ``--imgsz`` (H W, or one N for square); None when not given (the model's default)."""
    from retina_edge.errors import RetinaEdgeError

    if not args_imgsz:
        return None
    if len(args_imgsz) > 2:
        raise RetinaEdgeError("--imgsz takes H W or one N")
    return args_imgsz[0], args_imgsz[-1]


def frame_size(text: str) -> tuple[int, int]:
    """``--frame WxH`` (e.g. ``1280x720``) -> (width, height)."""
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit()) or int(width) < 1 or int(height) < 1:
        raise argparse.ArgumentTypeError(f"must be WIDTHxHEIGHT in pixels, e.g. 1280x720, got {text!r}")
    return int(width), int(height)


def frame_from(args: argparse.Namespace):  # noqa: ANN201 (FrameInput | None)
    """The :class:`~retina_edge.preprocess.FrameInput` ``--frame`` and ``--bgr``/``--rgb`` ask for, checked
    with the tail before anything is loaded."""
    from retina_edge.contract import check_frame_tail
    from retina_edge.errors import RetinaEdgeError
    from retina_edge.preprocess import FrameInput

    if args.frame is None:
        if args.frame_channels:
            raise RetinaEdgeError(f"--{args.frame_channels} sets the channel order of a frame graph's input: "
                                  "add --frame WxH")
        return None
    check_frame_tail(tail_from(args))
    width, height = args.frame
    return FrameInput(height, width, args.frame_channels or "bgr")


def tail_from(args: argparse.Namespace) -> str:
    """``--tail``, or its default: ``nms`` for a frame graph (final detections), else ``decode``."""
    return args.tail or ("nms" if args.frame else "decode")


def model_and_options(args: argparse.Namespace):  # noqa: ANN201
    """Load ``--weights`` and turn the shared flags into :class:`ExportOptions`."""
    from retina_edge.resources import check_export_memory

    size = input_size_from(args.imgsz)
    if size:  # before anything is loaded: an absurd size is refused at once
        check_export_memory(*size, batch=args.batch[1])
    frame = frame_from(args)
    from retina_edge.model.checkpoints import load_model
    from retina_edge.export.onnx_export import ExportOptions
    from retina_edge.preprocess import preprocess_for

    model = load_model(args.weights, arch=args.arch, num_classes=args.num_classes)
    preprocess = preprocess_for(model.config, input_size_from(args.imgsz), mode="resize" if args.resize else "letterbox",
                                align=args.align)
    options = ExportOptions(preprocess=preprocess, tail=tail_from(args), batch=tuple(args.batch), opset=args.opset,
                            simplify=not args.no_simplify, frame=frame)
    return model, options


def describe(path, metadata) -> str:  # noqa: ANN001
    """One line about a written model: size, input, batch range, graph tail and precision."""
    height, width = metadata.input_size
    frame = f"{metadata.frame} uint8 frames in, " if metadata.frame is not None else ""
    return (f"{path} ({path.stat().st_size / 1e6:.1f} MB): {frame}input {height}x{width}, batch "
            f"{'/'.join(map(str, metadata.batch))}, tail {metadata.tail.mode}, {metadata.label}")


def run(args: argparse.Namespace) -> int:
    model, options = model_and_options(args)
    from retina_edge.export.onnx_export import export_onnx

    path = export_onnx(model, args.output, options)
    print(f"wrote {describe(path, options.metadata_for(model.config))}, opset {options.opset}")
    return 0
