"""COCO evaluation: run a detector over a COCO-format set, write results JSON, score with pycocotools.

The detector is any callable mapping a list of ``(H, W, 3)`` uint8 RGB images to per-image
``(boxes x1y1x2y2 in source pixels, scores, labels)``, so PyTorch checkpoints and deployed
models are scored by the same code.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retina_edge.atomic import write_text_atomic
from retina_edge.data.coco_dataset import CocoIndex
from retina_edge.metrics.bootstrap import MatchTable, match_table
from retina_edge.imageio import read_image_rgb

Detections = tuple[np.ndarray, np.ndarray, np.ndarray]
DetectFn = Callable[[list[np.ndarray]], list[Detections]]

SUMMARY_KEYS = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L", "AR1", "AR10", "AR100", "AR_S", "AR_M", "AR_L")


@dataclass(frozen=True)
class CocoMetrics:
    """COCO summary numbers in [0, 1] (``-1`` where a size range has no objects) and per-class AP;
    ``matches``: the per-image matches behind them, for bootstrap intervals
    (:mod:`retina_edge.metrics.bootstrap`)."""

    summary: dict[str, float]
    per_class: dict[str, float]
    matches: MatchTable | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, dict[str, float]]:
        """``{"summary": ..., "per_class": ...}``, the metrics JSON ``train`` and ``eval`` write."""
        return {"summary": self.summary, "per_class": self.per_class}

    def table(self) -> str:
        head = "  ".join(f"{k}={self.summary[k]:.4f}" for k in SUMMARY_KEYS[:6])
        rows = [f"  {name:<20} {ap:.4f}" for name, ap in self.per_class.items()]
        return head + "\nper-class AP:\n" + "\n".join(rows)


def to_coco_results(image_id: int, detections: Detections, category_ids: Sequence[int] | None) -> list[dict]:
    """COCO results entries (``bbox`` as x, y, w, h) for one image's detections."""
    boxes, scores, labels = detections
    results = []
    for box, score, label in zip(np.asarray(boxes, dtype=np.float64), scores, labels):
        category = category_ids[int(label)] if category_ids else int(label)
        x1, y1, x2, y2 = box.tolist()
        results.append({"image_id": int(image_id), "category_id": int(category),
                        "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                        "score": round(float(score), 5)})
    return results


def predict_coco(detect: DetectFn, index: CocoIndex, *, category_ids: Sequence[int] | None,
                 batch_size: int = 4, progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Run ``detect`` over every image of ``index``; returns COCO results entries."""
    results: list[dict] = []
    records = index.images
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        outputs = detect([read_image_rgb(r.path) for r in chunk])
        for record, detections in zip(chunk, outputs):
            results.extend(to_coco_results(record.image_id, detections, category_ids))
        if progress:
            progress(min(start + batch_size, len(records)), len(records))
    return results


def coco_evaluate(ann_file: str | os.PathLike, results: list[dict], *, image_ids: Sequence[int] | None = None) -> CocoMetrics:
    """pycocotools bbox evaluation of ``results`` against ``ann_file`` (restricted to ``image_ids``)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        names = {c["id"]: c["name"] for c in gt.loadCats(gt.getCatIds())}
        # No detections at all: AP is 0 (pycocotools' loadRes refuses an empty list), and the
        # matches are those of a detector that found nothing, so intervals still pair up.
        dt = gt.loadRes(results) if results else _empty_results(gt)
        evaluator = COCOeval(gt, dt, "bbox")
        if image_ids is not None:
            evaluator.params.imgIds = list(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    if not results:
        return CocoMetrics({k: 0.0 for k in SUMMARY_KEYS}, {name: 0.0 for name in names.values()}, match_table(evaluator))
    summary = {k: float(v) for k, v in zip(SUMMARY_KEYS, evaluator.stats)}
    precision = evaluator.eval["precision"]  # (T, R, K, A, M): IoU, recall, class, area, max dets
    per_class = {}
    for k, category_id in enumerate(evaluator.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        per_class[names[category_id]] = float(values.mean()) if values.size else -1.0
    return CocoMetrics(summary, per_class, match_table(evaluator))


def _empty_results(gt):  # noqa: ANN001, ANN202 (pycocotools COCO)
    """A results COCO with no detections (``loadRes`` cannot make one from an empty list)."""
    from pycocotools.coco import COCO

    empty = COCO()
    empty.dataset = {"images": list(gt.dataset["images"]), "categories": list(gt.dataset.get("categories", [])),
                     "annotations": []}
    empty.createIndex()
    return empty


def save_results(path: str | os.PathLike, results: list[dict]) -> None:
    """Write COCO results JSON atomically."""
    write_text_atomic(Path(path), json.dumps(results))
