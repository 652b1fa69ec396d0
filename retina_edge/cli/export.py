"""``retina-edge export``: PyTorch weights -> ONNX with the I/O contract and metadata inside."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "export weights to ONNX (fixed input size, dynamic batch, decode/NMS in the graph, metadata inside)"
EXAMPLE = "retina-edge export --weights preset:synth --imgsz 256 256 --batch 1 1 8 -o synth.onnx"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="checkpoint, preset:NAME, torchvision:NAME or a bare state dict")
    parser.add_argument("--arch", help="architecture of a bare state dict (read from its shapes if omitted)")
    parser.add_argument("--num-classes", type=int, help="class count of a bare state dict")
    parser.add_argument("--imgsz", type=int, nargs="+", metavar="N", help="input H W (or one N for square); multiples of 32")
    parser.add_argument("--batch", type=int, nargs=3, metavar=("MIN", "OPT", "MAX"), default=(1, 1, 8),
                        help="batch range; MIN == MAX exports a static batch (default 1 1 8)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--postprocess", choices=["none", "decode"], default="decode",
                        help="none: raw head tensors; decode: per-level top-k + anchor decoding in the graph")
    parser.add_argument("--nms", action="store_true", help="also run NMS in the graph (fixed-size padded outputs)")
    parser.add_argument("--resize", action="store_true", help="stretch to the input size instead of letterboxing")
    parser.add_argument("--align", choices=["top-left", "center"], default="top-left", help="letterbox placement")
    parser.add_argument("--no-simplify", action="store_true", help="skip onnxsim/onnxslim")
    parser.add_argument("-o", "--output", required=True, help="ONNX file to write")


def input_size_from(args_imgsz: list[int] | None, model_config) -> tuple[int, int]:  # noqa: ANN001
    """(H, W) from ``--imgsz`` or, by default, the model's square ``max_size`` rounded up to 32."""
    from retina_edge.errors import RetinaEdgeError

    if args_imgsz:
        if len(args_imgsz) > 2:
            raise RetinaEdgeError("--imgsz takes H W or one N")
        return args_imgsz[0], args_imgsz[-1]
    side = -(-model_config.transform.max_size // 32) * 32
    return side, side


def run(args: argparse.Namespace) -> int:
    from retina_edge.checkpoints import load_model
    from retina_edge.export.onnx_export import ExportOptions, export_onnx
    from retina_edge.preprocess import PreprocessConfig

    model = load_model(args.weights, arch=args.arch, num_classes=args.num_classes)
    height, width = input_size_from(args.imgsz, model.config)
    transform = model.config.transform
    preprocess = PreprocessConfig(height, width, mode="resize" if args.resize else "letterbox", align=args.align,
                                  mean=transform.image_mean, std=transform.image_std)
    postprocess = "nms" if args.nms else args.postprocess
    options = ExportOptions(preprocess=preprocess, postprocess=postprocess, batch=tuple(args.batch),
                            opset=args.opset, simplify=not args.no_simplify)
    path = export_onnx(model, args.output, options)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): input {height}x{width}, "
          f"batch {'x'.join(map(str, args.batch))}, postprocess {postprocess}, opset {args.opset}")
    return 0
