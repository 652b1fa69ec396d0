"""``retina-edge bench``: latency p50/p90/p99 and throughput of several models side by side."""

from __future__ import annotations

import argparse

from retina_edge.cli.args import add_backend_argument, backend_options, non_negative_int, positive_int, thread_count


NAME = "bench"
HELP = "benchmark deployed models (and the PyTorch reference) interleaved: latency per stage, throughput, ratios"
EXAMPLE = ("retina-edge bench --model synth-fp32.onnx --model synth-int8-cpu.onnx --weights preset:synth "
           "--images data/synth/val --batch 1 4 --json bench.json --plot bench.png")

OUTPUT_FILES = ("json", "plot")
#: Checked before any model loads (cli/packages.py).
OPTION_PACKAGES = {"openvino": "openvino", "plot": "matplotlib", "weights": "torch"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", default=[], help="deployed model (repeat for several)")
    parser.add_argument("--weights", help="also time the PyTorch reference (FP32 eager) from these weights")
    add_backend_argument(parser)
    parser.add_argument("--openvino", action="store_true", help="also time each ONNX model with OpenVINO")
    parser.add_argument("--ov-precision", choices=["f32", "bf16", "f16"], default="f32")
    parser.add_argument("--images", help="image folder (default: synthetic images); with a frame graph, images of its frame size")
    parser.add_argument("--batch", type=positive_int, nargs="+", default=[1], help="batch sizes (default 1)")
    parser.add_argument("--iters", type=positive_int, default=20, help="timed iterations per batch size")
    parser.add_argument("--warmup", type=non_negative_int, default=3)
    parser.add_argument("--threads", type=thread_count, help="CPU threads for every backend and torch (at most the usable cores)")
    parser.add_argument("--cuda-graph", action="store_true", help="TensorRT engines: replay each batch as a CUDA graph")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--plot", help="write a stacked-bar PNG here")


#: Synthetic images rendered at most for the pool (a larger --batch needs --images).
MAX_SYNTHETIC = 256


def _frame_size(models: list[str]) -> tuple[int, int] | None:
    """(H, W) of the frames the models' frame graphs take (None: no frame graph); one size for all."""
    from retina_edge.errors import RetinaEdgeError
    from retina_edge.runtime.core.model_file import read_deployment

    sizes = {frame.size for frame in (read_deployment(path).frame for path in models) if frame is not None}
    if len(sizes) > 1:
        shown = ", ".join(f"{width}x{height}" for height, width in sorted(sizes))
        raise RetinaEdgeError(f"the frame graphs take frames of different sizes ({shown}): bench them in separate runs")
    return sizes.pop() if sizes else None


def _images(folder: str | None, batch: int, frame: tuple[int, int] | None = None):  # noqa: ANN202
    """The image pool: at least 16 images and one batch of the largest size, every timed batch distinct
    images; synthetic ones are scaled to ``frame`` (H, W) when a frame graph is timed, a folder's
    must have that size (a frame graph refuses others, as README says: refused here, before any
    model loads, not in the first timed batch)."""
    from retina_edge.errors import RetinaEdgeError

    count = max(16, batch)
    if folder:
        from retina_edge.data.coco_dataset import load_images

        images = load_images(folder, count, None)[0]
        _check_frame_sizes(folder, images, frame)
    elif count <= MAX_SYNTHETIC:
        import cv2

        from retina_edge.data.synth import SynthConfig, render_image

        images = [render_image(SynthConfig(seed=123), i)[0] for i in range(count)]
        if frame is not None:
            images = [cv2.resize(image, frame[::-1], interpolation=cv2.INTER_LINEAR) for image in images]
    else:
        images = []
    if len(images) < batch:
        where = f"{folder} has {len(images)}" if folder else f"synthetic images go up to {MAX_SYNTHETIC}"
        raise RetinaEdgeError(f"--batch {batch} needs {batch} images and {where}: give --images with more, or a smaller --batch")
    return images


def _check_frame_sizes(folder: str, images: list, frame: tuple[int, int] | None) -> None:
    from retina_edge.errors import DataError

    other = [image.shape[:2] for image in images if frame is not None and image.shape[:2] != frame]
    if other:
        (height, width), (frame_height, frame_width) = other[0], frame
        raise DataError(f"--images {folder}: {len(other)} of the {len(images)} images timed are not {frame_width}x"
                        f"{frame_height} (e.g. {width}x{height}), and the frame graph takes {frame_width}x{frame_height} "
                        "frames only: give images of that size, or leave out --images for synthetic frames")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from retina_edge.atomic import write_text_atomic
    from retina_edge.contract import is_engine_path
    from retina_edge.quality.bench import (detector_entry, format_table, measure_load, plot, process_rss_mb, pytorch_entry,
                                   run_bench)
    from retina_edge.errors import RetinaEdgeError
    from retina_edge.runtime import Detector

    if not args.model and not args.weights:
        raise RetinaEdgeError("give at least one --model or --weights")
    # before loading models: a pool too small is refused at once
    images = _images(args.images, max(args.batch), _frame_size(args.model))
    entries, preprocess = [], None
    options = backend_options(args, streams=1)  # once: threads bounded by the cores, said once
    for path in args.model:
        detector, added = measure_load(Detector, path, backend=args.backend,
                                       options=options.replace(precision_hint="f32",
                                                               cuda_graph=args.cuda_graph and is_engine_path(path)))
        entries.append(detector_entry(f"{Path(path).stem} [{detector.backend_name}]", detector, rss_mb=added))
        preprocess = preprocess or detector.metadata.preprocess
        same_row = (detector.backend_name, args.ov_precision) == ("openvino", "f32")  # auto already chose it
        if args.openvino and Path(path).suffix == ".onnx" and not same_row:
            ov, added = measure_load(Detector, path, backend="openvino", options=options.replace(cuda_graph=False))
            entries.append(detector_entry(f"{Path(path).stem} [openvino {args.ov_precision}]", ov, rss_mb=added))
    if args.weights:
        import torch

        from retina_edge.model.checkpoints import load_model
        from retina_edge.preprocess import preprocess_for

        if args.threads:
            torch.set_num_threads(options.threads)  # bounded by the cores, as the backends' are
        model, added = measure_load(load_model, args.weights)
        preprocess = preprocess or preprocess_for(model.config)
        entries.insert(0, pytorch_entry("pytorch fp32 eager", model, preprocess, rss_mb=added))
    summaries = []
    for batch in args.batch:
        summaries += run_bench(entries, images, batch=batch, iterations=args.iters, warmup=args.warmup)
    print(format_table(summaries))
    print(f"process RSS {process_rss_mb():.0f} MB; ratio = median latency / first model's (same batch)")
    if args.json:
        write_text_atomic(args.json, json.dumps(summaries, indent=2))
    if args.plot:
        plot(summaries, args.plot)
    return 0
