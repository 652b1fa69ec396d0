"""``retina-edge detect``: run a deployed model on an image or a folder of images."""

from __future__ import annotations

import argparse
import json

NAME = "detect"
HELP = ("detect objects with a deployed model (.onnx or .engine) in images, a folder, a video, a camera, "
        "an RTSP/HTTP stream or a GStreamer pipeline")
EXAMPLE = ("retina-edge detect --model synth-int8-cpu.onnx --source data/synth/val --save-dir out --save-json dets.json\n"
           "  retina-edge detect --model synth-int8-cpu.onnx --source 0 --show --save out.mp4 --jsonl dets.jsonl --max-fps 15")


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """Model and backend options shared by the commands that run deployed models."""
    parser.add_argument("--model", required=True, help="deployed model: .onnx, or .engine/.plan built by retina-edge")
    parser.add_argument("--backend", choices=["auto", "onnxruntime", "openvino", "tensorrt"], default="auto")
    parser.add_argument("--device", help="onnxruntime: cpu|cuda|tensorrt; openvino: CPU|GPU")
    parser.add_argument("--threads", type=int, help="CPU threads for the backend")
    parser.add_argument("--ov-precision", choices=["f32", "bf16", "f16"], default="f32",
                        help="OpenVINO inference precision (f32 matches the reference; bf16 is faster where supported)")


def add_score_thresh_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--score-thresh", "--conf", dest="score_thresh", type=float, metavar="T",
                        help="score threshold in [0, 1] (default: the model's); applies on every graph tail")


def make_detector(args: argparse.Namespace, **kwargs):  # noqa: ANN201
    from retina_edge.runtime import Detector

    return Detector(args.model, backend=args.backend, device=args.device, threads=args.threads,
                    openvino_precision=args.ov_precision, **kwargs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_runtime_arguments(parser)
    parser.add_argument("--source", required=True,
                        help="image, image folder, video file, camera index or /dev/videoN, rtsp:// or http:// URL, "
                             "or a GStreamer pipeline ending in appsink")
    parser.add_argument("--save-dir", help="images: write annotated images here")
    parser.add_argument("--save-json", help="images: write COCO-style detections (file_name, category_id, bbox xywh, score)")
    parser.add_argument("--save", help="streams: write the annotated video here (.mp4)")
    parser.add_argument("--jsonl", help="streams: one JSON line per frame (index, timestamp, detections)")
    parser.add_argument("--show", action="store_true", help="streams: show a window (needs a display)")
    parser.add_argument("--max-fps", type=float, help="streams: cap the capture rate")
    parser.add_argument("--mode", choices=["auto", "latest", "every"], default="auto",
                        help="streams: latest drops stale frames (live default), every processes all (file default)")
    add_score_thresh_argument(parser)
    parser.add_argument("--classes", type=int, nargs="+", help="keep only these labels")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from retina_edge.imageio import IMAGE_SUFFIXES

    source = Path(args.source)
    is_images = (source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES) or source.is_dir()
    if not is_images or args.save or args.jsonl or args.show:
        from retina_edge.cli.stream import run_stream

        return run_stream(args, make_detector(args, score_thresh=args.score_thresh))
    return run_images(args)


def run_images(args: argparse.Namespace) -> int:
    from pathlib import Path

    from retina_edge.atomic import write_text_atomic
    from retina_edge.errors import DataError
    from retina_edge.imageio import list_images, read_image_rgb, write_image_rgb
    from retina_edge.runtime.draw import draw_detections

    source = Path(args.source)
    if source.is_dir():
        files = list_images(source)
    elif source.is_file():
        files = [source]
    else:
        raise DataError(f"source not found: {source}")
    if not files:
        raise DataError(f"no images in {source}")
    detector = make_detector(args, score_thresh=args.score_thresh)
    model = detector.metadata.model
    records, skipped = [], 0
    for path in files:
        try:
            image = read_image_rgb(path)
        except DataError as error:
            skipped += 1
            print(f"skipped: {error}")
            continue
        detections = detector.detect([image])[0]
        if args.classes is not None:
            detections = detections.filter(classes=args.classes)
        print(f"{path.name}: {len(detections)} detections" + "".join(f", {d.name} {d.score:.2f}" for d in list(detections)[:3]))
        if args.save_dir:
            write_image_rgb(Path(args.save_dir) / (path.stem + ".jpg"), draw_detections(image, detections))
        for det in detections:
            x1, y1, x2, y2 = det.box
            records.append({"file_name": str(path.relative_to(source) if source.is_dir() else path.name),
                            "category_id": model.category_id(det.label), "name": det.name,
                            "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)], "score": round(det.score, 5)})
    if args.save_json:
        write_text_atomic(args.save_json, json.dumps(records))
    print(f"{len(files) - skipped} images, {len(records)} detections, {skipped} unreadable skipped")
    return 0
