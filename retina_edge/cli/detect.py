"""``retina-edge detect``: run a deployed model on an image or a folder of images."""

from __future__ import annotations

import argparse
import json

from retina_edge.cli import robotics_options
from retina_edge.cli.args import (
    add_backend_argument,
    add_backend_options_arguments,
    backend_name,
    backend_options,
    device_help,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int_or_auto,
    unit_interval,
)
from retina_edge.runtime.video.draw import DISPLAY_SCORE
from retina_edge.runtime.video.run import MAX_BATCH_WAIT_MS
from retina_edge.runtime.video.tracking import TRACKERS, TrackerOptions

NAME = "detect"
HELP = ("detect objects with a deployed model (.onnx or .engine) in images, a folder, a video, a camera, "
        "an RTSP/HTTP stream or a GStreamer pipeline")
EXAMPLE = ("retina-edge detect --model synth-int8-cpu.onnx --source data/synth/val --save-dir out --save-json dets.json\n"
           "  retina-edge detect --model synth-int8-cpu.onnx --source 0 --show --save out.mp4 --jsonl dets.jsonl --max-fps 15\n"
           "  retina-edge detect --model m-b4.onnx --source front.mp4 --source rtsp://cam2/s --track --save videos/ "
           "--jsonl dets.jsonl --json stats.json")

OUTPUT_FILES = ("save_json", "jsonl", "json", "record")
OUTPUT_FOLDERS = ("save_dir",)
#: Checked before the model loads (cli/packages.py).
OPTION_PACKAGES = {"record": "mcap", "foxglove": "foxglove",
                   "track": lambda args: TRACKERS.get(args.tracker or TrackerOptions.tracker).module}


def planned_outputs(args: argparse.Namespace) -> list[tuple[str, str, bool]]:
    """The videos ``--save`` writes, named per source (and its folder): checked with the declared
    outputs before work (writable, no two on one path)."""
    if not args.save:
        return []
    from pathlib import Path

    from retina_edge.cli.stream import source_specs, video_paths
    from retina_edge.runtime.video.sources import redact

    specs = source_specs(args)
    paths = video_paths(args.save, [redact(spec) for spec in specs])
    folder = [] if Path(args.save).suffix.lower() == ".mp4" else [("--save", args.save, True)]
    return folder + [(f"--save (video of source {index})" if len(specs) > 1 else "--save", str(path), False)
                     for index, path in enumerate(paths)]


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """Model and backend options shared by the commands that run deployed models."""
    parser.add_argument("--model", required=True, help="deployed model: .onnx, .engine/.plan built by retina-edge, or "
                                                             "triton://HOST:PORT/MODEL (a Triton server's gRPC endpoint)")
    add_backend_argument(parser)
    parser.add_argument("--device", help=device_help())
    add_backend_options_arguments(parser)
    parser.add_argument("--streams", type=positive_int_or_auto, default="auto",
                        help="inferences at once (OpenVINO throughput streams; ONNX Runtime splits the cores), kept "
                             "in flight on video files and folders; auto: measured once per model and machine for "
                             "those, 1 for live sources and single images (default auto)")


def add_score_thresh_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--score-thresh", "--conf", dest="score_thresh", type=float, metavar="T",
                        help="score threshold in [0, 1] (default: the model's); applies on every graph tail")


def make_detector(args: argparse.Namespace, *, frames_wait: bool = False, **kwargs):  # noqa: ANN201
    """A :class:`Detector` for a model file, or a :class:`TritonDetector` for ``triton://HOST:PORT/MODEL``.
    ``frames_wait``: the source is a file whose frames wait for inference, where ``--streams auto``
    measures whether several in flight help; elsewhere auto means one (the lowest latency)."""
    from retina_edge.runtime import Detector
    from retina_edge.runtime.remote.triton_client import SCHEME

    if args.model.startswith(SCHEME):
        from retina_edge.errors import RetinaEdgeError
        from retina_edge.runtime import TritonDetector

        local = [flag for flag, value in (("--backend", args.backend != "auto"), ("--device", args.device),
                                          ("--threads", args.threads), ("--cuda-graph", args.cuda_graph),
                                          ("--streams", args.streams not in (1, "auto"))) if value]
        if local:
            raise RetinaEdgeError(f"{', '.join(local)} choose how a local model runs; the server decides for "
                                  f"{args.model}")
        return TritonDetector(args.model, **kwargs)

    streams = 1 if args.streams == "auto" and not frames_wait else args.streams
    return Detector(args.model, backend=backend_name(args), options=backend_options(args, streams=streams), **kwargs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_runtime_arguments(parser)
    parser.add_argument("--source", action="append",
                        help="image, image folder, video file, camera index or /dev/videoN, rtsp:// or http:// URL, "
                             "or a GStreamer pipeline ending in appsink; repeat for several sources (one model, "
                             "their frames batched together)")
    parser.add_argument("--sources", metavar="FILE", help="a text file of sources, one per line (# comments)")
    parser.add_argument("--save-dir", help="images: write annotated images here (the folder's layout is kept)")
    parser.add_argument("--save-json", help="images: write COCO-style detections (file_name, category_id, bbox xywh, score)")
    parser.add_argument("--save", help="streams: write the annotated video here: OUT.mp4 (several sources: "
                                       "OUT-<index>-<name>.mp4), or a folder of <name>.mp4")
    parser.add_argument("--jsonl", help="streams: one JSON line per frame (source, spec, frame, file, timestamp, "
                                        "detections with track_id when tracking; -1: not tracked)")
    parser.add_argument("--json", help="streams: write the run's statistics here (per source: frames, dropped, fps, "
                                       "latency p50/p99, status)")
    parser.add_argument("--track", action="store_true",
                        help="streams: give each detection a track ID, stable across frames, per source (--tracker; "
                             "pip install 'retina-edge[track]' && pip install --no-deps 'trackers>=2.6'); -1 for one "
                             f"not tracked: under the tracker's minimum score ({TrackerOptions.min_score}), or new until "
                             f"its track starts (at {max(TrackerOptions.activation_score, TrackerOptions.high_score)}) "
                             "and is confirmed")
    parser.add_argument("--tracker", choices=TRACKERS.names(),
                        help="tracking: " + "; ".join(f"{spec.name}: {spec.description}" for spec in TRACKERS.values())
                             + f" (default {TrackerOptions.tracker}, the best on moving and fixed cameras in "
                               "bench/tracking_bench.py)")
    parser.add_argument("--fixed-camera", action="store_true",
                        help="tracking: the cameras never move; skip camera-motion compensation (on by default: boxes "
                             "are tracked where they are in the scene, so a camera that pans, turns or shakes keeps "
                             "the IDs; it costs about as much as the colour checks: bench/RESULTS.md)")
    parser.add_argument("--track-reid", type=unit_interval, metavar="SIMILARITY",
                        help="tracking: colour checks of the IDs; an object back after its track was lost keeps its ID "
                             "when its colours match a lost track's this well, and IDs swapped where objects crossed "
                             "or taken from another object go back, 0..1 (default 0.8; 0: off, for scenes of "
                             "look-alike objects)")
    parser.add_argument("--max-batch-wait-ms", type=batch_wait_ms, default=10.0,
                        help=f"several sources: how long a batch waits for the other sources' frames, at most "
                             f"{MAX_BATCH_WAIT_MS:.0f} (default 10)")
    parser.add_argument("--show", action="store_true", help="streams: show a window (needs a display)")
    parser.add_argument("--max-fps", type=positive_float, help="streams: cap the capture rate")
    parser.add_argument("--reconnect-attempts", type=non_negative_int, default=10,
                        help="live streams: reopen a dropped source this many times (backoff 0.5 s to 8 s), then exit 1")
    parser.add_argument("--mode", choices=["auto", "latest", "every"], default="auto",
                        help="streams: latest drops stale frames (live default), every processes all (file default)")
    add_score_thresh_argument(parser)
    parser.add_argument("--draw-thresh", type=unit_interval, default=DISPLAY_SCORE, metavar="T",
                        help=f"drawn outputs (--save-dir, --save, --show) show detections scoring at least T "
                             f"(default {DISPLAY_SCORE}); the data outputs keep every detection above --score-thresh")
    parser.add_argument("--classes", nargs="+", metavar="CLASS",
                        help="keep only these classes, by name or category id (the ids --save-json and --jsonl write)")
    robotics_options.add_arguments(parser)


def batch_wait_ms(text: str) -> float:
    value = non_negative_float(text)
    if value > MAX_BATCH_WAIT_MS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_BATCH_WAIT_MS:.0f} (a batch waiting longer for one "
                                         f"source holds up the others), got {text}")
    return value


def streamed_flags(args: argparse.Namespace) -> list[str]:
    """The flags given that run the sources as a stream (a folder too), whose outputs are per frame."""
    return [flag for flag, given in (("--save", args.save), ("--jsonl", args.jsonl), ("--json", args.json),
                                     ("--show", args.show), ("--track", args.track), ("--record", args.record),
                                     ("--foxglove", args.foxglove is not None)) if given]


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from retina_edge.cli.detect_checks import check_arguments
    from retina_edge.cli.stream import run_stream, source_specs
    from retina_edge.imageio import IMAGE_SUFFIXES
    from retina_edge.runtime.video.sources import is_live

    specs = source_specs(args)
    source = Path(specs[0])
    is_images = len(specs) == 1 and ((source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES) or source.is_dir())
    streamed = streamed_flags(args)
    check_arguments(args, specs, is_images=is_images, streamed=streamed)  # before the model loads
    if is_images and not streamed:
        return run_images(args, source)
    # One file: frames wait for inference, and --streams auto measures whether several in flight help.
    # Several sources run one batch at a time.
    frames_wait = len(specs) == 1 and not is_live(specs[0]) and args.mode != "latest"
    detector = make_detector(args, frames_wait=frames_wait, score_thresh=args.score_thresh)
    try:
        classes = class_filter(args, detector)
    except BaseException:
        detector.close()
        raise
    return run_stream(args, detector, classes)


def class_filter(args: argparse.Namespace, detector) -> tuple[int, ...] | None:  # noqa: ANN001
    """The contiguous labels ``--classes`` names (names or category ids), checked against the model."""
    return detector.metadata.model.labels_for(args.classes) if args.classes else None


def run_images(args: argparse.Namespace, source) -> int:  # noqa: ANN001
    from retina_edge.errors import DataError
    from retina_edge.imageio import list_images, skipped_files

    files = list_images(source) if source.is_dir() else [source]
    passed_over = skipped_files(source) if source.is_dir() else []
    if not files:
        raise DataError(f"no images in {source}" + (f" (skipped {len(passed_over)}: {passed_over[0]}, ...)"
                                                     if passed_over else ""))
    for note in passed_over:
        print(f"skipped: {note}")
    with make_detector(args, score_thresh=args.score_thresh) as detector:
        classes = class_filter(args, detector)
        records, done, skipped = [], 0, 0
        try:
            for path in files:
                found = _detect_file(args, detector, source, path, classes)
                if found is None:
                    skipped += 1
                else:
                    records += found
                done += 1
        except KeyboardInterrupt:
            saved = _save_records(args, records)
            raise KeyboardInterrupt(f"after {done} of {len(files)} images{saved}") from None
    if skipped == len(files):
        raise DataError(f"none of the {len(files)} images in {source} could be read")
    saved = _save_records(args, records)
    print(f"{len(files) - skipped} images, {len(records)} detections, {skipped + len(passed_over)} unreadable "
          f"skipped{saved}")
    return 0


def _detect_file(args: argparse.Namespace, detector, source, path, classes) -> list[dict] | None:  # noqa: ANN001
    """Detect one image file, print a line, draw it into --save-dir; its COCO-style records, or None if unreadable."""
    from pathlib import Path

    from retina_edge.errors import DataError
    from retina_edge.imageio import read_image_rgb, write_image_rgb
    from retina_edge.runtime.video.draw import draw_detections

    try:
        image = read_image_rgb(path)
    except DataError as error:
        if not source.is_dir():
            raise  # one file: its problem is the error
        print(f"skipped: {error}")
        return None
    detections = detector.detect([image])[0]
    if classes is not None:
        detections = detections.filter(classes=classes)
    print(f"{path.name}: {len(detections)} detections" + "".join(f", {d.name} {d.score:.2f}" for d in list(detections)[:3]))
    name = str(path.relative_to(source) if source.is_dir() else path.name)
    if args.save_dir:  # the input's path in its folder, name and suffix: a/x.jpg, b/x.jpg and x.png stay apart
        write_image_rgb(Path(args.save_dir) / name, draw_detections(image, detections, min_score=args.draw_thresh))
    return [{"file_name": name, "category_id": det.category_id, "name": det.name,
             "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)], "score": round(det.score, 5)}
            for det in detections for x1, y1, x2, y2 in [det.box]]


def _save_records(args: argparse.Namespace, records: list[dict]) -> str:
    """Write --save-json (atomically); the note to add to the summary line."""
    if not args.save_json:
        return ""
    from retina_edge.atomic import write_text_atomic

    write_text_atomic(args.save_json, json.dumps(records))
    return f"; detections written to {args.save_json}"
