"""``verify``: the deployed model against the PyTorch reference on the same preprocessed inputs.

Both see the exact batch :func:`retina_edge.preprocess.preprocess_batch` makes; a frame graph sees
the frames and preprocesses them itself, the reference that batch (so the graph's frame steps are
checked with the rest). Reported:

- tensors: the deployed graph's outputs against the same graph computed in PyTorch
  (:func:`retina_edge.export.onnx_export.graph_module`): max/mean absolute error, cosine similarity;
- detections, with the reference's as ground truth: precision/recall at IoU 0.5 and 0.9 (same
  label), score error of matched pairs, and COCO AP of deployed-vs-reference;
- with annotations: COCO AP of both against them, and the difference (points), each with its 95%
  paired bootstrap interval over the images (:mod:`retina_edge.metrics.bootstrap`).

Pass/fail per precision comes from :class:`VerifyThresholds`; the AP drop is judged on its
interval (``gate``): ``lower`` (the default) fails when even the lower bound of the drop exceeds
the allowance, i.e. when the images *prove* a loss beyond it; ``upper`` fails unless the upper
bound is within it, i.e. unless they prove the loss is within it (a release gate, which needs
enough images: the report says how many).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from retina_edge.metrics.bootstrap import MIN_IMAGES, images_needed, paired_bootstrap
from retina_edge.metrics.evaluate import coco_evaluate, to_coco_results
from retina_edge.metrics.matching import MatchTolerance, pairwise_iou
from retina_edge.config import ModelConfig
from retina_edge.errors import RetinaEdgeError
from retina_edge.model.retinanet import RetinaNet
from retina_edge.preprocess import boxes_to_source, preprocess_batch
from retina_edge.progress import Progress
from retina_edge.model.reference import reference_on_inputs
from retina_edge.runtime.core.detector import Detector
from retina_edge.runtime.core.results import Detections


GATES = ("lower", "upper")
#: Each limit's range, inclusive (a NaN is in none): AP points, AP as a fraction, score differences.
LIMITS = {"max_delta_ap": (0.0, 100.0, "an AP drop in points"), "min_ap_vs_reference": (0.0, 1.0, "a fraction of AP"),
          "max_mean_score_error": (0.0, 1.0, "a score difference"), "max_score_error": (0.0, 1.0, "a score difference"),
          "exact_tensor_tol": (0.0, 1.0, "a relative tolerance")}
OPTIONAL_LIMITS = ("max_score_error", "exact_tensor_tol")
#: Resamples of the paired bootstrap behind every AP interval (seeded: a report is reproducible).
BOOTSTRAP_RESAMPLES = 1000


@dataclass(frozen=True)
class VerifyThresholds:
    """Limits for a pass. ``max_delta_ap`` is in AP points (0..100) and needs annotations;
    ``min_ap_vs_reference`` (0..1) applies always. Score errors of matched pairs are bounded on
    average, and at worst only where the model is meant to be exact (FP32): below FP32 a tiny
    score change can flip which of two overlapping boxes survives NMS, so a reference box's
    partner may be a different box and the worst pair says nothing about the model."""

    max_delta_ap: float
    min_ap_vs_reference: float
    max_mean_score_error: float
    max_score_error: float | None = None
    #: FP32 only: when every output tensor matches the reference graph's to this (relative to the
    #: tensor's magnitude, at least 1), the graph computes the reference's numbers, and the detection
    #: differences left come from the order of near-equal scores at top-k and NMS (a last-bit
    #: difference picks another of two equal candidates): they are reported, not failed.
    exact_tensor_tol: float | None = None
    #: Which bound of the AP drop's 95% interval must be within ``max_delta_ap``: "lower" (fail on
    #: a proven excess) or "upper" (fail unless the drop is proven within it).
    gate: str = "lower"

    def __post_init__(self) -> None:
        self.check(**asdict(self))

    @staticmethod
    def check(**limits: object) -> None:
        """Raise for a limit no model could be judged by (NaN, negative, infinite, beyond its scale):
        ``nan`` failed every model and ``-1``/``inf`` passed every one. Callers may check the limits
        they override before any work (the CLI does)."""
        for name, value in limits.items():
            low, high, scale = LIMITS.get(name, (None, None, ""))
            if low is None or (value is None and name in OPTIONAL_LIMITS):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise RetinaEdgeError(f"the verify limit {name} is {scale} ({low} to {high}), got {value!r}", option=name)
        gate = limits.get("gate", GATES[0])
        if gate not in GATES:
            raise RetinaEdgeError(f"unknown AP gate {gate!r}; expected one of {GATES}", option="gate")

    @classmethod
    def for_precision(cls, precision: str, target: str = "any") -> VerifyThresholds:
        """The limits the recipe that made a ``precision`` graph for ``target`` sets (:mod:`retina_edge.calib.recipes`)."""
        from retina_edge.calib.recipes import recipe_for_graph

        return cls(**recipe_for_graph(precision, target).verify)


@dataclass
class TensorAgreement:
    """Errors of one output. ``paired`` is the share of elements compared: 1.0 for raw tensors
    (index-aligned); for candidate lists, the share paired by :func:`_pair_candidates`."""

    name: str
    max_abs: float
    mean_abs: float
    cosine: float
    paired: float = 1.0
    #: Over the identical pairs only (all of a raw tensor): the largest error relative to the
    #: reference's largest magnitude (at least 1), and the share of elements paired that way.
    max_rel: float = 0.0
    identical: float = 1.0
    #: Elements compared, and the candidates there were to pair (elements, for raw tensors): nothing
    #: compared proves nothing, whether for lack of candidates or because none paired.
    compared: int = 0
    candidates: int = 0


@dataclass
class Compared:
    """One output's paired values over a batch: ``got`` (deployed) and ``want`` (reference) aligned;
    ``same`` marks pairs of identical candidates (None: every pair, index-aligned raw tensors)."""

    name: str
    got: np.ndarray
    want: np.ndarray
    paired: float = 1.0
    same: np.ndarray | None = None
    identical: float = 1.0
    candidates: int | None = None  # None: every element of ``want`` (raw tensors)


@dataclass
class VerifyReport:
    precision: str
    target: str
    images: int
    tensors: list[TensorAgreement] = field(default_factory=list)
    precision_recall: dict[str, float] = field(default_factory=dict)
    score_error: dict[str, float] = field(default_factory=dict)
    ap_vs_reference: float = 0.0
    coco: dict[str, dict[str, float]] = field(default_factory=dict)
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)
    #: One entry per check made: ``{"name", "passed", "detail"}`` (what ``--junit`` writes).
    checks: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        data = asdict(self)
        data["passed"] = self.passed
        return data


def _tensor_agreement(parts: list[Compared]) -> TensorAgreement:
    """Errors of one output over all batches: over every pair, and (``max_rel``) over identical pairs."""
    got = np.concatenate([p.got.astype(np.float64).ravel() for p in parts])
    want = np.concatenate([p.want.astype(np.float64).ravel() for p in parts])
    diff = np.abs(got - want)
    denominator = np.linalg.norm(got) * np.linalg.norm(want)
    cosine = float(got @ want / denominator) if denominator else 1.0
    same = np.concatenate([np.broadcast_to(True if p.same is None else p.same[(slice(None),) + (None,) * (p.want.ndim - 1)],
                                           p.want.shape).ravel() for p in parts])
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    return TensorAgreement(parts[0].name, float(diff.max(initial=0.0)), float(diff.mean()) if diff.size else 0.0, cosine,
                           float(np.mean([p.paired for p in parts])), float(diff[same].max(initial=0.0)) / scale,
                           float(np.mean([p.identical for p in parts])), int(diff.size),
                           sum(p.want.size if p.candidates is None else p.candidates for p in parts))


def _pair_candidates(outputs: dict[str, np.ndarray], expected: dict[str, np.ndarray], names: tuple[str, str, str],
                     score_thresh: float) -> list[Compared]:
    """Pair candidate lists (boxes, scores, labels) per image: the top-k order of near-equal
    scores is arbitrary, so index-wise comparison would pit different candidates against each
    other. Identical candidates (same label, IoU >= 0.99) are paired first, then the rest at
    IoU >= 0.5; scores within 0.05 either way. Only candidates that can become detections
    (reference score above the threshold; deployed above half of it, as a margin) are compared,
    which also keeps this cheap. The shares paired count against the larger side above the
    threshold: a reference with no candidates where the graph has some pairs none of them."""
    from retina_edge.metrics.matching import match_detections

    boxes, scores, labels = names
    pairs: dict[str, list] = {"got": [], "want": [], "same": []}
    total = 0
    for index in range(len(expected[scores])):
        keep_ref = expected[scores][index] > score_thresh
        keep_dep = outputs[scores][index] > score_thresh / 2
        ref = [expected[name][index][keep_ref] for name in names]
        dep = [outputs[name][index][keep_dep] for name in names]
        total += max(len(ref[1]), int(np.count_nonzero(outputs[scores][index] > score_thresh)))
        identical = match_detections(ref, dep, MatchTolerance(iou_thresh=0.99, score_tol=0.05)).pairs
        free_ref = np.setdiff1d(np.arange(len(ref[1])), [i for i, _ in identical])
        free_dep = np.setdiff1d(np.arange(len(dep[1])), [j for _, j in identical])
        rest = match_detections(tuple(a[free_ref] for a in ref), tuple(a[free_dep] for a in dep),
                                MatchTolerance(iou_thresh=0.5, score_tol=0.05))
        for (i, j), same in [*((pair, True) for pair in identical),
                             *(((free_ref[i], free_dep[j]), False) for i, j in rest.pairs)]:
            pairs["want"].append((ref[0][i], ref[1][i]))
            pairs["got"].append((dep[0][j], dep[1][j]))
            pairs["same"].append(same)
    same = np.asarray(pairs["same"], dtype=bool)
    paired, identical_share = (len(same) / total, same.sum() / total) if total else (1.0, 1.0)
    return [Compared(name, np.asarray([g[k] for g in pairs["got"]]), np.asarray([w[k] for w in pairs["want"]]),
                     paired, same, identical_share, total) for k, name in enumerate((boxes, scores))]


def _same_label_iou(ref: Detections, dep: Detections) -> np.ndarray:
    """``(len(ref), len(dep))`` IoU, zero between boxes of different labels."""
    overlaps = pairwise_iou(ref.boxes, dep.boxes)
    overlaps[ref.labels[:, None] != dep.labels[None, :]] = 0
    return overlaps


def precision_recall(reference: list[Detections], deployed: list[Detections], iou: float) -> tuple[float, float]:
    """Greedy one-to-one matching at ``iou`` (same label): (precision, recall) over all images."""
    true_positive = ref_total = dep_total = 0
    for ref, dep in zip(reference, deployed):
        ref_total, dep_total = ref_total + len(ref), dep_total + len(dep)
        overlaps = _same_label_iou(ref, dep)
        used = np.zeros(len(dep), dtype=bool)
        for i in np.argsort(-ref.scores, kind="stable"):
            candidates = np.flatnonzero((overlaps[i] >= iou) & ~used)
            if candidates.size:
                used[candidates[np.argmax(overlaps[i, candidates])]] = True
                true_positive += 1
    return (true_positive / dep_total if dep_total else 1.0), (true_positive / ref_total if ref_total else 1.0)


def matched_scores(reference: list[Detections], deployed: list[Detections], iou: float = 0.5) -> np.ndarray:
    """``(P, 2)`` (reference score, deployed score) of each reference detection whose best
    same-label deployed box has IoU >= ``iou``."""
    pairs = []
    for ref, dep in zip(reference, deployed):
        if not len(dep):
            continue
        overlaps = _same_label_iou(ref, dep)
        for i in np.flatnonzero(overlaps.max(axis=1, initial=0.0) >= iou):
            pairs.append((float(ref.scores[i]), float(dep.scores[np.argmax(overlaps[i])])))
    return np.asarray(pairs, dtype=np.float64).reshape(-1, 2)


def ap_against(reference: list[Detections], deployed: list[Detections]) -> float:
    """COCO AP of ``deployed`` taking ``reference`` as ground truth (1.0 = identical detections)."""
    labels = sorted({int(label) for ref in reference for label in ref.labels} | {0})
    gt = {"images": [], "annotations": [], "categories": [{"id": label + 1, "name": str(label)} for label in labels]}
    for image_id, ref in enumerate(reference, start=1):
        gt["images"].append({"id": image_id, "width": 1, "height": 1})
        for box, label in zip(ref.boxes, ref.labels):
            x1, y1, x2, y2 = (float(v) for v in box)
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": image_id, "category_id": int(label) + 1,
                                      "bbox": [x1, y1, x2 - x1, y2 - y1], "area": max(1e-6, (x2 - x1) * (y2 - y1)), "iscrowd": 0})
    if not gt["annotations"]:
        return 1.0 if not any(len(d) for d in deployed) else 0.0
    category_ids = [label + 1 for label in range(max(labels) + 1)]
    results = [r for image_id, dep in enumerate(deployed, start=1) for r in to_coco_results(image_id, dep.as_tuple(), category_ids)]
    with tempfile.TemporaryDirectory(prefix="retina-edge-verify-") as scratch:
        path = Path(scratch) / "reference.json"
        path.write_text(json.dumps(gt))
        return coco_evaluate(path, results).summary["AP"]


#: What decides a model's tensors besides its weights; the input size, thresholds and NMS settings
#: may differ between an exported graph and its weights' defaults, so they are not compared.
STRUCTURE_FIELDS = ("arch", "depth", "variant", "norm", "backbone_width", "fpn_channels", "head_convs", "anchors",
                    "box_coder", "widths")


def check_same_model(deployed: ModelConfig, reference: ModelConfig, deployed_name: str, reference_name: str) -> None:
    """Comparing outputs is meaningless across class lists or architectures: say so before any work."""
    if (deployed.num_classes, deployed.class_names) != (reference.num_classes, reference.class_names):
        def show(config: ModelConfig) -> str:
            names = ", ".join(config.class_name(i) for i in range(min(config.num_classes, 6)))
            return f"{config.num_classes} classes ({names}{' ...' if config.num_classes > 6 else ''})"

        raise RetinaEdgeError(f"the classes differ: {deployed_name} has {show(deployed)}, the reference "
                              f"{reference_name} has {show(reference)}; verify a model against the weights it was "
                              "exported from")
    differing = [name for name in STRUCTURE_FIELDS if getattr(deployed, name) != getattr(reference, name)]
    if differing:
        shown = "; ".join(f"{name} {getattr(deployed, name)} vs {getattr(reference, name)}" for name in differing[:3])
        raise RetinaEdgeError(f"the architectures differ: {deployed_name} is a {deployed.arch}, the reference "
                              f"{reference_name} a {reference.arch} ({shown}); verify a model against the weights "
                              "it was exported from")


def run_verify(
    detector: Detector, model: RetinaNet, images: list[np.ndarray], *, batch_size: int = 4,
    annotations: tuple[str, list[int]] | None = None, thresholds: VerifyThresholds | None = None,
) -> tuple[VerifyReport, list[Detections], list[Detections]]:
    """Compare ``detector`` with ``model`` on ``images`` (uint8 RGB); returns the report and both
    detection lists. ``annotations``: (COCO json path, image id of each image) for COCO AP."""
    from retina_edge.export.onnx_export import graph_module

    metadata = detector.metadata
    thresholds = thresholds or VerifyThresholds.for_precision(metadata.precision, metadata.target)
    report = VerifyReport(precision=metadata.precision, target=metadata.target, images=len(images),
                          thresholds=asdict(thresholds))
    reference_module = graph_module(model.eval(), metadata)
    tensor_pairs: dict[str, list[Compared]] = {}
    reference_dets, deployed_dets = [], []
    step = max(1, min(batch_size, detector.max_batch))
    progress = Progress(len(images), "verify")
    for start in range(0, len(images), step):
        chunk = images[start : start + step]
        batch, infos = detector.preprocess(chunk)
        outputs = detector.infer(batch)
        deployed_dets.extend(detector.postprocess(outputs, infos))
        if metadata.frame is not None:  # the reference sees the host's preprocessing of the frames
            batch, infos = preprocess_batch(chunk, metadata.preprocess)
        with torch.no_grad():
            inputs = reference_module.network_input(torch.from_numpy(batch))  # deepstream graphs normalise inside
            head_outputs = model.head_outputs(inputs)  # once, for both the graph's tail and the detections
            expected = reference_module.tail(head_outputs[0])
            reference = reference_on_inputs(model, inputs, head_outputs=head_outputs)
        expected = dict(zip(metadata.output_names, (v.numpy() for v in expected)))
        spec = metadata.tail.spec
        if spec.form == "raw":
            compared = [Compared(name, outputs[name], expected[name]) for name in spec.compared]
        else:
            compared = _pair_candidates(outputs, expected, spec.compared, metadata.score_thresh)
        for part in compared:
            tensor_pairs.setdefault(part.name, []).append(part)
        progress.update(min(start + step, len(images)))
        for ref, info in zip(reference, infos):
            reference_dets.append(Detections(boxes_to_source(ref["boxes"].numpy(), info), ref["scores"].numpy(),
                                             ref["labels"].numpy(), model.config.class_names))
    for parts in tensor_pairs.values():
        report.tensors.append(_tensor_agreement(parts))
    for iou in (0.5, 0.9):
        p, r = precision_recall(reference_dets, deployed_dets, iou)
        report.precision_recall[f"precision@{iou}"], report.precision_recall[f"recall@{iou}"] = p, r
    pairs = matched_scores(reference_dets, deployed_dets)
    errors = np.abs(pairs[:, 0] - pairs[:, 1])
    report.score_error = {"mean": float(errors.mean()) if errors.size else 0.0, "max": float(errors.max()) if errors.size else 0.0,
                          "pairs": int(errors.size)}
    report.ap_vs_reference = ap_against(reference_dets, deployed_dets)
    if annotations:
        _coco_against_annotations(report, annotations, reference_dets, deployed_dets, model)
    _judge(report, thresholds)
    return report, reference_dets, deployed_dets


def _coco_against_annotations(report: VerifyReport, annotations: tuple[str, list[int]], reference_dets, deployed_dets, model) -> None:  # noqa: ANN001
    """COCO AP of both against the annotations, the difference, and their paired 95% intervals
    (``coco["<name>_points_ci95"]``: ``{"AP": [low, high], ...}`` in points)."""
    ann_file, image_ids = annotations
    category_ids = model.config.category_ids or None
    tables = {}
    for name, dets in (("reference", reference_dets), ("deployed", deployed_dets)):
        results = [r for image_id, d in zip(image_ids, dets) for r in to_coco_results(image_id, d.as_tuple(), category_ids)]
        metrics = coco_evaluate(ann_file, results, image_ids=image_ids)
        report.coco[name] = metrics.summary
        report.per_class[name] = metrics.per_class
        tables[name] = metrics.matches
    report.coco["delta_points"] = {k: 100 * (report.coco["deployed"][k] - report.coco["reference"][k]) for k in ("AP", "AP50", "AP75")}
    intervals = paired_bootstrap(tables["reference"], tables["deployed"], resamples=BOOTSTRAP_RESAMPLES).to_dict()
    for name in ("reference", "deployed", "delta"):
        report.coco[f"{name}_points_ci95"] = intervals[f"{name}_points_ci95"]
    report.coco["delta_points_se"] = intervals["delta_points_se"]
    report.coco["bootstrap"] = {k: intervals[k] for k in ("images", "resamples", "seed", "level")}


def ap_drop_interval(report: VerifyReport) -> tuple[float, float, float]:
    """(drop, lower, upper) of the COCO AP drop in points (positive: the deployed model is worse)."""
    low, high = report.coco["delta_points_ci95"]["AP"]
    return -report.coco["delta_points"]["AP"], -high, -low


def _judge(report: VerifyReport, thresholds: VerifyThresholds) -> None:
    checks = _detection_checks(report, thresholds)
    failures = [check["detail"] for check in checks if not check["passed"]]
    tol = thresholds.exact_tensor_tol
    exact = tol is not None and report.tensors and all(t.max_rel <= tol and t.identical >= 0.9 and t.compared
                                                       for t in report.tensors)
    if exact and failures:
        report.notes.append(f"the graph reproduces the reference's tensors (largest relative difference "
                            f"{max(t.max_rel for t in report.tensors):.1e}, within {tol}): the detection differences "
                            f"below come from the order of near-equal scores at top-k and NMS, not from the model")
        report.notes += failures
        for check in checks:
            check["passed"], check["detail"] = True, check["detail"] + " (reported, not failed: see the notes)"
    else:
        report.failures += failures
    report.checks = checks


def _detection_checks(report: VerifyReport, thresholds: VerifyThresholds) -> list[dict]:
    """Every check with its verdict; a failing one's ``detail`` says why."""
    def check(name: str, passed: bool, failed: str, ok: str) -> dict:
        return {"name": name, "passed": bool(passed), "detail": ok if passed else failed}

    checks = [check("ap_vs_reference", report.ap_vs_reference >= thresholds.min_ap_vs_reference,
                    f"AP of deployed vs reference detections is {report.ap_vs_reference:.3f}, below {thresholds.min_ap_vs_reference}",
                    f"AP of deployed vs reference detections {report.ap_vs_reference:.3f} >= {thresholds.min_ap_vs_reference}")]
    mean = report.score_error.get("mean", 0.0)
    checks.append(check("mean_score_error", mean <= thresholds.max_mean_score_error,
                        f"mean score error of matched detections is {mean:.4f}, above {thresholds.max_mean_score_error}",
                        f"mean score error {mean:.2e} <= {thresholds.max_mean_score_error}"))
    if thresholds.max_score_error is not None:
        worst = report.score_error.get("max", 0.0)
        checks.append(check("max_score_error", worst <= thresholds.max_score_error,
                            f"largest score error of matched detections is {worst:.4f}, above {thresholds.max_score_error}",
                            f"largest score error {worst:.2e} <= {thresholds.max_score_error}"))
    if report.coco:
        checks.append(_ap_drop_check(report, thresholds))
    return checks


def _ap_drop_check(report: VerifyReport, thresholds: VerifyThresholds) -> dict:
    drop, low, high = ap_drop_interval(report)
    allowed = thresholds.max_delta_ap
    bound = low if thresholds.gate == "lower" else high
    said = f"COCO AP dropped by {drop:.2f} points (95% interval {low:.2f} to {high:.2f}, {report.images} images)"
    if report.images < MIN_IMAGES:  # no evidence either way: the lower gate has no proven excess, the upper no proof
        unresolved = (f"{said}: unresolved, {report.images} images are too few for the interval to be evidence (at least "
                      f"{MIN_IMAGES}), so the {thresholds.gate} gate cannot judge it")
        if thresholds.gate == "lower":  # passes, so the terminal would not show it otherwise
            report.notes.append(unresolved)
        return {"name": "coco_ap_drop", "passed": thresholds.gate == "lower", "detail": unresolved}
    if bound <= allowed:
        return {"name": "coco_ap_drop", "passed": True,
                "detail": f"{said}: the {thresholds.gate} bound is within the {allowed} allowed"}
    detail = f"{said} against the annotations, more than the {allowed} allowed: the {thresholds.gate} bound exceeds it"
    if thresholds.gate == "upper" and low <= allowed:
        needed = images_needed(report.coco["delta_points_se"]["AP"], report.images, allowed - drop)
        detail += (f"; these images cannot show the drop is within it (about {needed} images would)" if needed
                   else "; the measured drop itself is above the allowance")
    return {"name": "coco_ap_drop", "passed": False, "detail": detail}
