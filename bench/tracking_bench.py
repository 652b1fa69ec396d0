"""Tracking quality and cost: every tracker, with and without camera-motion compensation and colour
checks, on fixed-camera and moving-camera synthetic videos with ground truth.

    python bench/tracking_bench.py --model m-b4.onnx                      # both sets, 64 videos each
    python bench/tracking_bench.py --model m-b4.onnx --sets moving --videos 16 --seed 20   # tuning seeds
    python bench/tracking_bench.py --model m-b4.onnx --sets --objects 50  # the cost alone

``m-b4.onnx``: ``retina-edge export --weights preset:synth --batch 1 4 4 -o m-b4.onnx``.

1. Per set (``fixed``: :class:`~retina_edge.data.synth_video.SyntheticVideo`, the camera still;
   ``moving``: :class:`~retina_edge.data.moving_video.MovingCameraVideo`, sweeps, returns and
   turns), ``--videos`` videos from seed ``--seed`` on, ``--frames`` frames each, written as MP4
   and run through one detection pipeline (four videos batched); the model's detections are then
   given identities by each variant: every registered tracker (``--trackers``; the table
   :data:`retina_edge.runtime.video.tracking.TRACKERS`, plugins' included) with camera-motion
   compensation (``+ CMC``) and colour checks (``+ colour``) on and off; BoT-SORT with its own CMC
   inside ``trackers`` (the check that compensating outside the tracker loses nothing); and the
   true identities (the detector's ceiling: each object's best detection gets its identity).
2. Scores over all objects (``--min-visibility``: objects less visible are ignored, with the boxes
   found on them): IDF1, MOTA and identity switches by ``motmetrics``, HOTA by ``trackers``'
   evaluation (TrackEval's formulas); each with a 95% interval from 2000 resamples of the videos,
   and paired differences of the default (``TrackerOptions()``) against every other variant, and
   its ratio to the ceiling, on the same resamples.
3. Cost: each tracker alone on ``--objects`` boxes over a 1920x1080 frame of a panning camera, ms
   per frame with and without compensation and colour checks, interleaved in one run.

Detections can be kept (``--cache DIR``: the MP4s and the model's detections), so runs that change
only the trackers skip the detector.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

CEILING = "true identities (the detector's ceiling)"
OWN_CMC = "botsort + its own CMC (inside trackers)"
COUNTS = ["idtp", "idfp", "idfn", "num_misses", "num_false_positives", "num_switches", "num_objects"]
ALPHAS = 19  # HOTA's localisation thresholds 0.05..0.95


def scene(kind: str, seed: int):  # noqa: ANN201
    from retina_edge.data.moving_video import MovingCameraVideo
    from retina_edge.data.synth_video import SyntheticVideo

    return MovingCameraVideo(seed=seed) if kind == "moving" else SyntheticVideo(seed=seed)


def variant_name(options) -> str:  # noqa: ANN001
    return (options.tracker + (" + CMC" if options.camera_motion else "")
            + (" + colour" if options.reid_similarity is not None else ""))


def variants(trackers: tuple[str, ...], settings: dict | None = None, both_only: bool = False) -> dict[str, object]:
    """Name -> TrackerOptions of every tracker with CMC and colour checks on and off (``both_only``:
    both on), the default first; ``settings``: other values of TrackerOptions' fields for all but
    the default."""
    from retina_edge.runtime.video.tracking import TrackerOptions

    default = TrackerOptions()
    found = {variant_name(default): default}
    for tracker in trackers:
        for cmc in (True,) if both_only else (True, False):
            for colour in (default.reid_similarity or 0.8,) + (() if both_only else (None,)):
                options = replace(default, **{"tracker": tracker, "camera_motion": cmc, "reid_similarity": colour,
                                              **(settings or {})})
                tried = " ".join(f"{name}={value}" for name, value in (settings or {}).items())
                found.setdefault(variant_name(options) + (f" [{tried}]" if tried else ""), options)
    return found


def own_cmc_botsort(options):  # noqa: ANN001, ANN201
    """BoT-SORT with ``trackers``' own camera-motion compensation (warping its Kalman states), given the frame."""
    from retina_edge.runtime.video.library_trackers import BoTSortTracker

    class OwnCmc(BoTSortTracker):
        def make(self, trackers, options):  # noqa: ANN001, ANN201
            made = super().make(trackers, options)
            made.enable_cmc, made.cmc = True, trackers.CMC(trackers.CMCConfig(method=options.motion_method))
            return made

        def _track(self, found, timestamp, image):  # noqa: ANN001, ANN202
            import cv2

            frame = None if image is None else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            return self._tracker.update(found, frame, timestamp)

    return OwnCmc(options)


def detect_videos(model: str, kind: str, seeds: list[int], frames: int, cache: Path) -> dict[int, list]:
    """Per seed: ``[(detections, image), ...]`` of its MP4 through one pipeline (cached in ``cache``)."""
    import cv2

    from retina_edge.runtime.core.results import Detections

    found: dict[int, list] = {}
    missing = [seed for seed in seeds if not (cache / f"{kind}-{seed}-{frames}.npz").exists()]
    if missing:
        run_detector(model, kind, missing, frames, cache)
    for seed in seeds:
        stored = np.load(cache / f"{kind}-{seed}-{frames}.npz")
        capture, images = cv2.VideoCapture(str(cache / f"{kind}-{seed}-{frames}.mp4")), []
        while len(images) < frames and (grabbed := capture.read())[0]:
            images.append(cv2.cvtColor(grabbed[1], cv2.COLOR_BGR2RGB))
        capture.release()
        split = np.cumsum(stored["counts"])[:-1]
        found[seed] = [(Detections(b, s, l), image) for b, s, l, image in zip(
            np.split(stored["boxes"], split), np.split(stored["scores"], split), np.split(stored["labels"], split), images)]
        assert len(found[seed]) == frames, (seed, len(found[seed]))
    return found


def run_detector(model: str, kind: str, seeds: list[int], frames: int, cache: Path) -> None:
    from retina_edge.data.synth_video import write_video
    from retina_edge.runtime import BackendOptions, Detector
    from retina_edge.runtime.video.pipeline import Pipeline

    cache.mkdir(parents=True, exist_ok=True)
    with Detector(model, options=BackendOptions(streams=1)) as detector, Pipeline(detector) as pipeline:
        for start in range(0, len(seeds), 4):
            group = seeds[start:start + 4]
            videos = [str(write_video(cache / f"{kind}-{seed}-{frames}.mp4", scene(kind, seed), frames)) for seed in group]
            results: dict[int, list] = {seed: [] for seed in group}
            for result in pipeline.run(videos):
                results[group[result.source]].append(result.detections)
            for seed, found in results.items():
                np.savez(cache / f"{kind}-{seed}-{frames}.npz", counts=[len(d) for d in found],
                         boxes=np.concatenate([d.boxes for d in found]).reshape(-1, 4),
                         scores=np.concatenate([d.scores for d in found]),
                         labels=np.concatenate([d.labels for d in found]))


def true_identities(detections, objects: list, min_score: float) -> np.ndarray:  # noqa: ANN001
    """The ceiling's IDs: each object's best-overlapping detection (IoU >= 0.5, score >= ``min_score``)
    takes the object's identity, one per object and frame (motmetrics' identity counts assume an ID
    once per frame); every other detection an ID of its own."""
    truth = np.full(len(detections), -1, dtype=np.int64)
    kept = np.flatnonzero(np.asarray(detections.scores) >= min_score)
    if len(kept) and objects:
        boxes = np.asarray(detections.boxes, dtype=np.float64)[kept]
        iou = iou_matrix(np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1),
                         np.array([box for _, _, box in objects], dtype=np.float64))
        truth[kept] = 1000 + np.arange(len(kept))
        for row, column in sorted(zip(*np.nonzero(iou >= 0.5)), key=lambda rc: -iou[rc]):
            if truth[kept[row]] >= 1000 and objects[column][0] not in truth[kept]:
                truth[kept[row]] = objects[column][0]
    return truth


def track_video(frames: list, options_by_name: dict, own_cmc: bool) -> dict[str, list[str]]:
    """MOTChallenge lines per variant for one video's ``[(detections, image), ...]``."""
    from retina_edge.runtime.video.tracking import make_tracker

    trackers = {name: make_tracker(options) for name, options in options_by_name.items()}
    if own_cmc:
        trackers[OWN_CMC] = own_cmc_botsort(replace(next(iter(options_by_name.values())), tracker="botsort"))
    lines: dict[str, list[str]] = {name: [] for name in trackers}
    for index, (detections, image) in enumerate(frames):
        for name, tracker in trackers.items():
            lines[name].append(mot_lines(index, detections, tracker.update(detections, None, image)))
    return lines


def mot_lines(index: int, detections, track_ids: np.ndarray) -> str:  # noqa: ANN001
    """Frame ``index``'s confirmed tracks as MOTChallenge lines (frame, id and pixel coordinates from 1)."""
    return "".join(f"{index + 1},{track_id + 1},{x1 + 1:.2f},{y1 + 1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{score:.3f},-1,-1,-1\n"
                   for (x1, y1, x2, y2), score, track_id in zip(detections.boxes, detections.scores, track_ids)
                   if track_id >= 0)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``(N, 4)`` and ``(M, 4)`` xywh boxes."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    return inter / (a[:, None, 2] * a[:, None, 3] + b[None, :, 2] * b[None, :, 3] - inter)


def scored_frames(truth, found, min_visibility: float = 0.0):  # noqa: ANN001, ANN201
    """Per frame of the ground truth: ``(frame, truth ids, found ids, IoU (truth x found))``, IoU
    >= 0.5 matching. Objects less visible than ``min_visibility`` are ignored, with the boxes found
    on them (as MOTChallenge does for its distractors): neither a miss nor a false positive."""
    box = ["X", "Y", "Width", "Height"]
    frames_found = set(found.index.get_level_values(0))
    for frame in sorted(truth.index.get_level_values(0).unique()):
        gt = truth.loc[frame]
        hyp = found.loc[frame] if frame in frames_found else found.iloc[:0]
        ignored = gt[gt["Visibility"] < min_visibility]
        gt = gt[gt["Visibility"] >= min_visibility]
        if len(ignored) and len(hyp):
            hyp = hyp[~(iou_matrix(hyp[box].to_numpy(), ignored[box].to_numpy()) >= 0.5).any(axis=1)]
        yield frame, gt.index.to_numpy(), hyp.index.to_numpy(), iou_matrix(gt[box].to_numpy(), hyp[box].to_numpy())


def accumulate(mm, truth, found, min_visibility: float = 0.0):  # noqa: ANN001, ANN201
    """motmetrics' compare_to_groundtruth over :func:`scored_frames`; its own IoU helper calls
    ``np.asfarray``, which NumPy 2 removed (motmetrics 1.4.0), so the distances are computed here."""
    accumulator = mm.MOTAccumulator(auto_id=False)
    for frame, gt, hyp, iou in scored_frames(truth, found, min_visibility):
        accumulator.update(gt, hyp, np.where(iou >= 0.5, 1 - iou, np.nan), frameid=frame)
    return accumulator


def hota_counts(truth, found, min_visibility: float = 0.0) -> np.ndarray:  # noqa: ANN001
    """``(4 * ALPHAS,)``: HOTA's TP, FN, FP and AssA x TP per threshold, by ``trackers``' evaluation
    (what :func:`hota` needs to combine videos as TrackEval does)."""
    from trackers.eval import compute_hota_metrics

    _, gt, hyp, iou = zip(*scored_frames(truth, found, min_visibility))
    result = compute_hota_metrics(list(gt), list(hyp), [np.where(s >= 0, s, 0.0) for s in iou])
    tp = result["HOTA_TP_array"]
    return np.concatenate([tp, result["HOTA_FN_array"], result["HOTA_FP_array"], result["AssA_array"] * tp])


def video_scores(mm, truth, lines: str, folder: Path, min_visibility: float) -> np.ndarray:  # noqa: ANN001
    """One video's counts: :data:`COUNTS` (motmetrics) then :func:`hota_counts`."""
    hyp = folder / "hyp.txt"
    hyp.write_text(lines)
    found = mm.io.loadtxt(str(hyp), fmt="mot15-2D")
    summary = mm.metrics.create().compute(accumulate(mm, truth, found, min_visibility), metrics=COUNTS)
    return np.concatenate([[float(summary[name].iloc[0]) for name in COUNTS], hota_counts(truth, found, min_visibility)])


def scores(counts: np.ndarray) -> np.ndarray:
    """``(..., 3)``: IDF1, MOTA and HOTA of summed video counts (last axis: :func:`video_scores`)."""
    idtp, idfp, idfn, misses, false, switches, objects = np.moveaxis(counts[..., :len(COUNTS)], -1, 0)
    tp, fn, fp, ass = np.split(counts[..., len(COUNTS):], 4, axis=-1)
    det_a = tp / np.maximum(1, tp + fn + fp)
    ass_a = ass / np.maximum(1e-10, tp)
    hota = np.sqrt(det_a * ass_a).mean(axis=-1)
    return np.stack([2 * idtp / (2 * idtp + idfp + idfn), 1 - (misses + false + switches) / objects, hota], axis=-1)


def report(counts: dict[str, np.ndarray], default: str, resamples: int = 2000) -> None:
    """Each variant's IDF1, MOTA, HOTA with intervals; the default's paired IDF1 difference from each,
    and its ratio to the ceiling."""
    videos = len(next(iter(counts.values())))
    picks = np.random.default_rng(0).integers(0, videos, (resamples, videos))
    samples = {name: scores(c[picks].sum(axis=1)) for name, c in counts.items()}
    points = {name: scores(c.sum(axis=0)) for name, c in counts.items()}
    print(f"  {'variant':<40}{'IDF1':>23}{'MOTA':>23}{'HOTA':>23}{'ID sw':>7}  IDF1 default - variant")
    for name in sorted(counts, key=lambda n: -points[n][0]):
        cells = "".join(f"{points[name][m]:>9.3f} [{lo:.3f}, {hi:.3f}]"
                        for m, (lo, hi) in enumerate(np.percentile(samples[name], [2.5, 97.5], axis=0).T))
        gain = samples[default][:, 0] - samples[name][:, 0]
        low, high = np.percentile(gain, [2.5, 97.5])
        diff = "" if name == default else (f"{points[default][0] - points[name][0]:+.3f} [{low:+.3f}, {high:+.3f}]"
                                           + ("" if low > 0 or high < 0 else "~"))
        print(f"  {name[:40]:<40}{cells}{int(counts[name][:, COUNTS.index('num_switches')].sum()):>7}  {diff}")
    ratio = samples[default][:, 0] / samples[CEILING][:, 0]
    low, high = np.percentile(ratio, [2.5, 97.5])
    print(f"  default's IDF1 / the ceiling's: {points[default][0] / points[CEILING][0]:.3f} [{low:.3f}, {high:.3f}]"
          "  (~: difference unresolved on these videos)")


def bench_set(args: argparse.Namespace, kind: str, cache: Path) -> None:
    import motmetrics as mm

    from retina_edge.data.synth_video import write_mot_ground_truth
    from retina_edge.runtime.video.tracking import TrackerOptions

    seeds = list(range(args.seed, args.seed + args.videos))
    options = variants(tuple(args.trackers), dict(args.option), args.both_only)
    if args.only:
        options = {name: value for k, (name, value) in enumerate(options.items()) if k == 0 or name in args.only}
    default = variant_name(TrackerOptions())
    counts: dict[str, list] = {}
    start = time.perf_counter()
    for group in range(0, len(seeds), 8):
        detected = detect_videos(args.model, kind, seeds[group:group + 8], args.frames, cache)
        for seed, frames in detected.items():
            video = scene(kind, seed)
            lines = track_video(frames, options, own_cmc="botsort" in args.trackers and not (args.both_only or args.only))
            lines[CEILING] = [mot_lines(i, d, true_identities(d, video.boxes(i), TrackerOptions().min_score))
                              for i, (d, _) in enumerate(frames)]
            with tempfile.TemporaryDirectory() as folder:
                gt = write_mot_ground_truth(Path(folder) / "gt.txt", video, args.frames)
                truth = mm.io.loadtxt(str(gt), fmt="mot15-2D")
                for name, found in lines.items():
                    counts.setdefault(name, []).append(video_scores(mm, truth, "".join(found), Path(folder),
                                                                    args.min_visibility))
    print(f"{kind} camera: {len(seeds)} videos x {args.frames} frames (seeds {seeds[0]}..{seeds[-1]}), objects at "
          f"least {args.min_visibility:.0%} visible; 95% intervals from 2000 resamples of the videos "
          f"({time.perf_counter() - start:.0f} s):")
    arrays = {name: np.array(rows) for name, rows in counts.items()}
    if args.counts:
        np.savez(Path(args.counts) / f"{kind}-{seeds[0]}-{seeds[-1]}.npz", **arrays)
    report(arrays, default)


def tracker_cost(objects: int, trackers: tuple[str, ...], frames: int = 200) -> None:
    """Each tracker on ``objects`` boxes (a grid drifting with jitter) over 1920x1080 frames of a camera
    panning 3 px a frame across a textured scene, with and without CMC and colour checks: ms per
    update, the variants interleaved frame by frame so machine noise hits all alike."""
    from retina_edge.data.moving_video import _scene_background
    from retina_edge.runtime.core.results import Detections
    from retina_edge.runtime.video.tracking import make_tracker

    rng = np.random.default_rng(0)
    scene_image = _scene_background(rng, 1080, 1920 + 3 * frames, 320 * 240)
    side = int(np.ceil(np.sqrt(objects)))
    corners = np.array([[200.0 + 150 * (k % side), 100.0 + 110 * (k // side)] for k in range(objects)])
    chosen = {name: make_tracker(options) for name, options in variants(trackers).items()}
    times: dict[str, list[float]] = {name: [] for name in chosen}
    for step in range(frames):
        image = np.ascontiguousarray(scene_image[:, 3 * step:3 * step + 1920])
        xy = corners + 0.5 * step + rng.normal(0, 1.0, corners.shape)
        boxes = np.concatenate([xy, xy + 80], axis=1).astype(np.float32)
        detections = Detections(boxes, rng.uniform(0.6, 1.0, objects).astype(np.float32), np.zeros(objects, np.int64))
        for name, tracker in chosen.items():
            begin = time.perf_counter()
            tracker.update(detections, None, image)
            times[name].append(time.perf_counter() - begin)
    print(f"tracker cost at {objects} objects on 1920x1080 frames ({frames} frames, interleaved), ms per frame:")
    for name, values in times.items():
        values_ms = 1e3 * np.array(values[10:])
        print(f"  {name:<32} median {np.median(values_ms):6.2f}  p99 {np.percentile(values_ms, 99):6.2f}")


def setting(text: str) -> tuple[str, object]:
    """``FIELD=VALUE`` -> (field, value as TrackerOptions' default of that field types it)."""
    from retina_edge.runtime.video.tracking import TrackerOptions

    name, _, value = text.partition("=")
    kind = type(getattr(TrackerOptions(), name))
    return name, (value.lower() in ("1", "true", "on") if kind is bool else kind(value))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from retina_edge.runtime.video.tracking import TRACKERS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--sets", nargs="*", choices=["fixed", "moving"], default=["fixed", "moving"])
    parser.add_argument("--trackers", nargs="+", choices=TRACKERS.names(), default=list(TRACKERS.names()),
                        help="the registered trackers to compare (default: all)")
    parser.add_argument("--videos", type=int, default=64)
    parser.add_argument("--seed", type=int, default=100,
                        help="the first video's seed (100 on: videos no setting of the trackers was chosen on)")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--min-visibility", type=float, default=0.0,
                        help="ignore objects less visible than this (MOTChallenge-style)")
    parser.add_argument("--objects", type=int, default=50, help="boxes per frame for the cost (0: no cost)")
    parser.add_argument("--both-only", action="store_true", help="only the variants with CMC and colour checks on")
    parser.add_argument("--only", nargs="+", metavar="VARIANT", help="only these variants (names as the table shows them) "
                                                                      "beside the default and the ceiling")
    parser.add_argument("--option", action="append", type=setting, default=[], metavar="FIELD=VALUE",
                        help="a TrackerOptions field's value for every variant but the default (repeatable; "
                             "for choosing settings on other seeds than the reported ones)")
    parser.add_argument("--counts", help="also write each variant's per-video counts here (a folder; <set>-<seeds>.npz)")
    parser.add_argument("--cache", help="keep the MP4s and detections here (default: a temporary folder)")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for kind in args.sets:
            bench_set(args, kind, Path(args.cache or folder))
    if args.objects:
        tracker_cost(args.objects, tuple(args.trackers))


if __name__ == "__main__":
    main()
