"""Frame graphs (issue 41): parity with the plain graph, precision budgets, host cost and latency.

    python bench/frame_bench.py parity --frames 200 --out runs/frame-bench
    python bench/frame_bench.py control --frames 200 --out runs/frame-bench
    python bench/frame_bench.py verify --frames 200 --out runs/frame-bench
    python bench/frame_bench.py latency --iters 60 --out runs/frame-bench
    python bench/frame_bench.py pipeline --seconds 40 --out runs/frame-bench

The model is the preset (``preset:synth``, input 192x192, ``nms`` tail, batch 1..4). Frames are
camera-sized: synthetic scenes (seed 7, which the preset never saw) scaled to the frame size, with
sensor noise (Gaussian, sigma 4 grey levels), and their boxes scaled alike. Graphs are built once
into ``--out/graphs`` by ``build_precision_graph`` (``retina-edge build``), with and without
``--frame``; INT8 calibrates on 256 images of ``synth --seed 1`` (written into ``--out`` too).

1. parity: for each precision (fp32, fp16, int8 for cpu, int8 for tensorrt), frame size (640x480,
   1280x720, 1920x1080) and letterbox placement (top-left, center), the frame graph against
   ``Detector`` on the plain graph of the same precision, over ``--frames`` frames: the share of
   detections matched (same label, IoU >= 0.9, score within 0.01; over the larger of the two sets,
   per frame), with a 95% interval from resampling the frames; also for detections scoring >= 0.3.
   control: at 1280x720, what each plain graph does with +-1e-5 of noise on its input, what it gives
   on the frame steps' own network input, and how far that input is from the host's (INT8 graphs
   turn differences of float-rounding size into other detections; see ``control``).
2. verify: ``run_verify`` (``retina-edge verify``) of the FP16 and INT8 frame graphs at 1280x720 in
   both placements against the PyTorch reference, with the frames' annotations: the recipes'
   thresholds (AP drop with its 95% interval, AP against the reference, mean score error).
3. latency: per frame size, batch 1, ONNX Runtime, interleaved (``quality.bench.run_bench``): the
   frame graph (the host stacks the frame; the graph letterboxes, normalises, maps boxes) against
   the plain FP32 graph with the host's preprocessing and box mapping; host CPU time (this thread's;
   OpenCV is kept to one thread, so that is all of it) of preprocess + postprocess per frame, and
   p50/p99 of the whole call.
4. pipeline: 4 live camera-sized streams (1280x720, paced at ``--fps`` each) through one pipeline
   (frames of the 4 batched into one call), plain FP32 graph and frame graph alternating for
   ``--rounds`` rounds in one process: capture-to-result latency p50/p99, the host CPU time of
   the detector's preprocess + postprocess per frame, and the process's CPU time per frame.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SIZES = {"640x480": (480, 640), "1280x720": (720, 1280), "1920x1080": (1080, 1920)}
ALIGNS = ("top-left", "center")
PRECISIONS = (("fp32", "cpu"), ("fp16", "cpu"), ("int8", "cpu"), ("int8", "tensorrt"))
FRAME_SEED, NOISE = 7, 4.0


def camera_frame(index: int, size: tuple[int, int]) -> tuple[np.ndarray, list[tuple[int, list[float]]]]:
    """Frame ``index`` of ``size`` (H, W): RGB uint8 and its ``(label, [x, y, w, h])`` boxes."""
    import cv2

    from retina_edge.data.synth import SynthConfig, render_image

    scene, boxes = render_image(SynthConfig(seed=FRAME_SEED), index)
    (height, width), (scene_h, scene_w) = size, scene.shape[:2]
    frame = cv2.resize(scene, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    noise = np.random.default_rng([FRAME_SEED, index]).normal(0, NOISE, frame.shape).astype(np.float32)
    sx, sy = width / scene_w, height / scene_h
    return (np.clip(frame + noise, 0, 255).astype(np.uint8),
            [(label, [x * sx, y * sy, w * sx, h * sy]) for label, (x, y, w, h) in boxes])


def graph(out: Path, precision: str, target: str, align: str, frame: str | None, *, batch=(1, 1, 4)) -> Path:  # noqa: ANN001
    """The preset's ``nms`` graph of this precision and placement (a frame graph when ``frame``), built once."""
    from retina_edge.calib.build import BuildOptions, CalibrationOptions, build_precision_graph
    from retina_edge.data.synth import SynthConfig, write_dataset
    from retina_edge.export.onnx_export import ExportOptions
    from retina_edge.model.checkpoints import load_model
    from retina_edge.preprocess import FrameInput, preprocess_for

    path = out / "graphs" / f"{precision}-{target}-{align}-{frame or 'plain'}-b{batch[2]}.onnx"
    if path.is_file():
        return path
    calib = out / "calib"
    if precision == "int8" and not (calib / "train").is_dir():
        write_dataset(calib, SynthConfig(num_images=256, seed=1, val_fraction=0.0))
    model = load_model("preset:synth")
    frame_input = FrameInput(*SIZES[frame]) if frame else None
    export = ExportOptions(preprocess=preprocess_for(model.config, align=align), tail="nms", batch=batch, frame=frame_input)
    calibration = CalibrationOptions(str(calib / "train"), count=256, cache_dir=out / "stats") if precision == "int8" else None
    path.parent.mkdir(parents=True, exist_ok=True)
    build_precision_graph(model, path, export=export, build=BuildOptions(precision, target, calibration=calibration))
    return path


def chosen(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The precisions ``--precisions`` names (``fp32-cpu`` ...), in table order."""
    return [pair for pair in PRECISIONS if "-".join(pair) in args.precisions]


def share_interval(matched: np.ndarray, total: np.ndarray, resamples: int = 1000) -> tuple[float, float, float]:
    """Matched share over all frames and its 95% interval from resampling the frames."""
    from retina_edge.metrics.bootstrap import resample_weights

    weights = resample_weights(len(total), resamples, seed=0)
    counted = weights @ total
    shares = (weights @ matched)[counted > 0] / counted[counted > 0]  # resamples with no detection say nothing
    low, high = np.percentile(shares, [2.5, 97.5]) if shares.size else (1.0, 1.0)
    return float(matched.sum() / max(total.sum(), 1)), float(low), float(high)


def parity(args: argparse.Namespace) -> None:
    from retina_edge.metrics.matching import MatchTolerance, match_detections
    from retina_edge.runtime import Detector

    tolerance, rows = MatchTolerance(iou_thresh=0.9, score_tol=0.01), []
    for precision, target in chosen(args):
        for align in ALIGNS:
            plain = Detector(graph(args.out, precision, target, align, None), backend="onnxruntime")
            for size_name, size in SIZES.items():
                framed = Detector(graph(args.out, precision, target, align, size_name), backend="onnxruntime")
                counts = np.zeros((2, 2, args.frames))  # (all, >= 0.3) x (matched, total) x frames
                for index in range(args.frames):
                    image = camera_frame(index, size)[0]
                    (want,), (got,) = plain.detect(image), framed.detect(image)
                    for row, floor in enumerate((0.0, 0.3)):
                        want_kept, got_kept = want.filter(score_thresh=floor), got.filter(score_thresh=floor)
                        counts[row, 0, index] = match_detections(want_kept.as_tuple(), got_kept.as_tuple(), tolerance).matched
                        counts[row, 1, index] = max(len(want_kept), len(got_kept))
                framed.close()
                row = {"precision": f"{precision}-{target}", "align": align, "frame": size_name, "frames": args.frames,
                       **{f"{name}_share_ci95": share_interval(counts[k, 0], counts[k, 1]) for k, name in enumerate(("all", "high"))},
                       **{f"{name}_detections": int(counts[k, 1].sum()) for k, name in enumerate(("all", "high"))}}
                rows.append(row)
                print(json.dumps(row), flush=True)
            plain.close()
    (args.out / "parity.json").write_text(json.dumps(rows, indent=1))


def control(args: argparse.Namespace) -> None:
    """What the graphs do with differences of float-rounding size in their input, at 1280x720
    (top-left): the plain graph on the host's batch against the plain graph on that batch plus
    uniform noise of +-1e-5 on the image (not the padding); the frame graph's own network input
    fed to the plain graph (its network computes what the plain one does on it); and the largest
    difference between the frame steps' network input and the host's."""
    import onnx
    import onnxruntime as ort

    from retina_edge.metrics.matching import MatchTolerance, match_detections
    from retina_edge.preprocess import frame_batch, preprocess_batch
    from retina_edge.runtime.core.finish import Finisher
    from retina_edge.runtime.core.model_file import read_deployment

    tolerance, size, rows = MatchTolerance(iou_thresh=0.9, score_tol=0.01), SIZES["1280x720"], []
    for precision, target in chosen(args):
        plain_path = graph(args.out, precision, target, "top-left", None)
        frame_path = graph(args.out, precision, target, "top-left", "1280x720")
        metadata, frame_metadata = read_deployment(plain_path), read_deployment(frame_path)
        framed = onnx.load(str(frame_path))
        framed.graph.output.append(onnx.helper.make_tensor_value_info("/frame/network_input", onnx.TensorProto.FLOAT, None))
        sessions = [ort.InferenceSession(model, providers=["CPUExecutionProvider"])
                    for model in (str(plain_path), framed.SerializeToString())]
        names, finish = list(metadata.output_names), Finisher(metadata)
        rng, counts, largest = np.random.default_rng(0), np.zeros((2, 2, args.frames)), 0.0

        def detect(batch, infos):  # noqa: ANN001, ANN202
            return finish(dict(zip(names, sessions[0].run(names, {"images": batch}))), infos)[0]

        for index in range(args.frames):
            image = camera_frame(index, size)[0]
            batch, infos = preprocess_batch([image], metadata.preprocess)
            network_input = sessions[1].run(["/frame/network_input"], {"images": frame_batch([image], frame_metadata.frame)[0]})[0]
            largest = max(largest, float(np.abs(network_input - batch).max()))
            noisy = batch + rng.uniform(-1e-5, 1e-5, batch.shape).astype(np.float32) * (batch != 0)
            want = detect(batch, infos)
            for row, other in enumerate((detect(noisy, infos), detect(network_input, infos))):
                counts[row, 0, index] = match_detections(want.as_tuple(), other.as_tuple(), tolerance).matched
                counts[row, 1, index] = max(len(want), len(other))
        row = {"precision": f"{precision}-{target}", "frame": "1280x720", "frames": args.frames,
               "noise_1e-5_share_ci95": share_interval(counts[0, 0], counts[0, 1]),
               "frame_steps_input_share_ci95": share_interval(counts[1, 0], counts[1, 1]),
               "max_abs_frame_steps_minus_host": largest}
        rows.append(row)
        print(json.dumps(row), flush=True)
    (args.out / "control.json").write_text(json.dumps(rows, indent=1))


def annotated_frames(count: int, size: tuple[int, int], folder: Path) -> tuple[list[np.ndarray], Path, list[int]]:
    """``count`` frames and a COCO json of their boxes (category ids 1..6, as synth writes them)."""
    from retina_edge.data.synth import CLASSES

    frames, images, annotations = [], [], []
    for index in range(count):
        image, boxes = camera_frame(index, size)
        frames.append(image)
        images.append({"id": index + 1, "file_name": f"{index}.png", "height": size[0], "width": size[1]})
        annotations += [{"id": len(annotations) + 1, "image_id": index + 1, "category_id": label + 1, "bbox": box,
                         "area": box[2] * box[3], "iscrowd": 0} for label, box in boxes]
    path = folder / f"frames-{size[1]}x{size[0]}.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]}))
    return frames, path, [image["id"] for image in images]


def verify(args: argparse.Namespace) -> None:
    from retina_edge.model.checkpoints import load_model
    from retina_edge.quality.verify import ap_drop_interval, run_verify
    from retina_edge.runtime import Detector

    model, size_name = load_model("preset:synth"), "1280x720"
    frames, ann, ids = annotated_frames(args.frames, SIZES[size_name], args.out)
    rows = []
    for precision, target in chosen(args):
        for align in ALIGNS:
            with Detector(graph(args.out, precision, target, align, size_name), backend="onnxruntime") as detector:
                report, _, _ = run_verify(detector, model, frames, annotations=(str(ann), ids))
            drop, low, high = ap_drop_interval(report)
            row = {"precision": f"{precision}-{target}", "align": align, "frame": size_name, "frames": len(frames),
                   "passed": report.passed, "ap_drop_points": [round(drop, 3), round(low, 3), round(high, 3)],
                   "ap_vs_reference": round(report.ap_vs_reference, 4), "mean_score_error": report.score_error["mean"],
                   "thresholds": report.thresholds, "failures": report.failures}
            rows.append(row)
            print(json.dumps(row), flush=True)
    (args.out / "verify.json").write_text(json.dumps(rows, indent=1))


def host_timed(detector) -> dict[str, float]:  # noqa: ANN001
    """Wrap ``detector``'s preprocess and postprocess (what ``detect`` calls) to add up this thread's
    CPU time in them; returns the running totals ({"cpu_s", "frames"})."""
    totals = {"cpu_s": 0.0, "frames": 0}
    preprocess, postprocess = detector.preprocess, detector.postprocess

    def timed_preprocess(images):  # noqa: ANN001, ANN202
        start = time.thread_time()
        result = preprocess(images)
        totals["cpu_s"] += time.thread_time() - start
        totals["frames"] += len(images)
        return result

    def timed_postprocess(outputs, infos):  # noqa: ANN001, ANN202
        start = time.thread_time()
        result = postprocess(outputs, infos)
        totals["cpu_s"] += time.thread_time() - start
        return result

    detector.preprocess, detector.postprocess = timed_preprocess, timed_postprocess
    return totals


def latency(args: argparse.Namespace) -> None:
    from retina_edge.quality.bench import detector_entry, format_table, run_bench
    from retina_edge.runtime import Detector

    rows = []
    for size_name, size in SIZES.items():
        plain = Detector(graph(args.out, "fp32", "cpu", "top-left", None), backend="onnxruntime")
        framed = Detector(graph(args.out, "fp32", "cpu", "top-left", size_name), backend="onnxruntime")
        totals = [host_timed(plain), host_timed(framed)]
        entries = [detector_entry(f"plain + host steps {size_name}", plain), detector_entry(f"frame graph {size_name}", framed)]
        images = [camera_frame(index, size)[0] for index in range(16)]
        summaries = run_bench(entries, images, batch=1, iterations=args.iters, warmup=args.warmup)
        print(format_table(summaries), flush=True)
        for summary, total in zip(summaries, totals):
            summary["host_cpu_ms_per_frame"] = 1e3 * total["cpu_s"] / max(total["frames"], 1)  # warm-up included
            summary["frame"] = size_name
            rows.append(summary)
            print(f"  {summary['name']}: host CPU (preprocess + postprocess) {summary['host_cpu_ms_per_frame']:.2f} ms "
                  f"per frame", flush=True)
        plain.close()
        framed.close()
    (args.out / "latency.json").write_text(json.dumps(rows, indent=1))


class PacedCamera:
    """A live source: ``frames`` cycled at ``fps``, for ``seconds`` (then it ends)."""

    live = True
    spec = "paced"

    def __init__(self, frames: list[np.ndarray], fps: float, seconds: float) -> None:
        self.frames, self.fps, self.seconds = frames, fps, seconds
        self.position, self.start = 0, time.perf_counter()

    def open(self) -> None:
        self.position, self.start = 0, time.perf_counter()

    def read(self) -> np.ndarray | None:
        due = self.start + self.position / self.fps
        if due - self.start > self.seconds:
            return None
        time.sleep(max(0.0, due - time.perf_counter()))
        self.position += 1
        return self.frames[self.position % len(self.frames)]

    def close(self) -> None:
        pass


def pipeline_round(detector, cameras: list[PacedCamera]) -> dict:  # noqa: ANN001
    """One run of the 4 cameras: latency p50/p99, host CPU of pre/postprocess and process CPU per frame."""
    from retina_edge.runtime.video import Pipeline, PipelineConfig
    from retina_edge.runtime.video.sources import ReconnectPolicy

    totals = host_timed(detector)
    latencies, cpu_start = [], time.process_time()
    for camera in cameras:
        camera.open()
    # the paced cameras end after --seconds: no reopening
    with Pipeline(detector, PipelineConfig(reconnect=ReconnectPolicy(attempts=0))) as pipeline:
        for result in pipeline.run(cameras, log=lambda *a, **k: None):
            latencies.append(result.latency_ms)
        dropped = pipeline.stats.dropped
    frames = len(latencies)
    detector.__dict__.pop("preprocess"), detector.__dict__.pop("postprocess")  # unwrap
    return {"frames": frames, "dropped": dropped, "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99)),
            "host_cpu_ms_per_frame": 1e3 * totals["cpu_s"] / max(totals["frames"], 1),
            "process_cpu_ms_per_frame": 1e3 * (time.process_time() - cpu_start) / max(frames, 1)}


def pipeline(args: argparse.Namespace) -> None:
    from retina_edge.runtime import BackendOptions, Detector

    size_name = "1280x720"
    frames = [[camera_frame(10 * camera + index, SIZES[size_name])[0] for index in range(10)] for camera in range(4)]
    detectors = {name: Detector(graph(args.out, "fp32", "cpu", "top-left", frame, batch=(1, 4, 4)), backend="onnxruntime",
                                options=BackendOptions(streams=1))
                 for name, frame in (("plain + host steps", None), ("frame graph", size_name))}
    rows = {name: [] for name in detectors}
    for round_index in range(args.rounds):
        for name, detector in detectors.items():
            cameras = [PacedCamera(frames[camera], args.fps, args.seconds) for camera in range(4)]
            row = pipeline_round(detector, cameras)
            rows[name].append(row)
            print(json.dumps({"round": round_index, "graph": name, **row}), flush=True)
    summary = {name: {key: float(np.median([r[key] for r in runs])) for key in runs[0]} for name, runs in rows.items()}
    print(json.dumps({"fps_per_camera": args.fps, "cameras": 4, "frame": size_name, "median_over_rounds": summary}, indent=1))
    (args.out / "pipeline.json").write_text(json.dumps({"fps": args.fps, "rounds": rows, "summary": summary}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["parity", "control", "verify", "latency", "pipeline"])
    parser.add_argument("--out", type=Path, default=Path("runs/frame-bench"))
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--fps", type=float, default=3.0, help="pipeline: frames per second of each of the 4 cameras")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precisions", nargs="+", default=["-".join(p) for p in PRECISIONS],
                        choices=["-".join(p) for p in PRECISIONS], help="parity, verify: these only")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import cv2

    # The host steps on one thread (NumPy's are anyway), so this thread's CPU time is all of theirs;
    # more OpenCV threads would not lower the CPU time a frame costs, only spread it.
    cv2.setNumThreads(1)
    {"parity": parity, "control": control, "verify": verify, "latency": latency, "pipeline": pipeline}[args.part](args)


if __name__ == "__main__":
    main()
