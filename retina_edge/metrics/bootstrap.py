"""Paired bootstrap intervals for COCO AP, AP50 and AP75 over images.

COCO AP of a detector on N images is a statistic of those images; its uncertainty (and that of the
difference between two detectors scored on the *same* images) is estimated by resampling the
images with replacement. Re-running COCOeval per resample would cost seconds each; instead the
per-image matches are taken once from a COCOeval run (:func:`match_table`: per category, the
detections in pycocotools' order with their TP/FP flag at each IoU threshold, and each image's
count of non-ignored ground truth, for the "all" area range and ``maxDets=100``), and a resample
becomes an integer weight per image: cumulative TP/FP counts weighted by it give the
precision/recall curve, from which AP follows exactly as ``COCOeval.accumulate`` computes it
(101-point interpolated precision). With all weights 1 the result is pycocotools' AP to the bit
(ties between detections of different images are ordered as in the full set, which is
pycocotools' order when no image repeats).

The interval is the 95% percentile interval; "paired" means both detectors' APs (and so their
difference) are computed on the same resampled image multiset, which is what makes the interval
of a difference narrow when both detectors err on the same images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METRICS = ("AP", "AP50", "AP75")
#: Index of IoU 0.5 and 0.75 among COCOeval's thresholds 0.50:0.05:0.95.
_IOU_INDEX = {"AP50": 0, "AP75": 5}
_RECALL_THRESHOLDS = np.linspace(0.0, 1.00, 101)
_EPS = np.spacing(1)


@dataclass(frozen=True)
class CategoryMatches:
    """One category's detections over all images, in pycocotools' accumulate order (score
    descending, stable over image order then per-image order): ``image`` ``(D,)`` index into the
    table's images, ``tp``/``fp`` ``(T, D)`` bool per IoU threshold (neither where the detection
    is ignored), ``gt`` ``(N,)`` non-ignored ground truth per image."""

    image: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    gt: np.ndarray
    #: Whether pycocotools scores the category at all (some image has a detection or a ground truth).
    present: bool = True


@dataclass(frozen=True)
class MatchTable:
    """Per-image matches of one detector on ``num_images`` images, computed once."""

    num_images: int
    categories: tuple[CategoryMatches, ...]
    iou_thresholds: int = 10

    def subset(self, images: np.ndarray) -> MatchTable:
        """The table of the images at positions ``images`` (distinct), in that order: the matches
        of a smaller set drawn from this one, without scoring it again."""
        images = np.asarray(images, dtype=np.int64)
        position = np.full(self.num_images, -1)
        position[images] = np.arange(len(images))
        categories = []
        for c in self.categories:
            keep = position[c.image] >= 0
            gt = c.gt[images]
            present = bool(keep.any() or gt.any())  # approximately pycocotools' "some image has a gt or a detection"
            categories.append(CategoryMatches(position[c.image[keep]], c.tp[:, keep], c.fp[:, keep], gt, present))
        return MatchTable(len(images), tuple(categories), self.iou_thresholds)


def match_table(evaluator) -> MatchTable:  # noqa: ANN001 (pycocotools COCOeval after evaluate())
    """The matches ``COCOeval.accumulate`` would use for area "all" and the largest ``maxDets``."""
    params = evaluator.params
    n_images, n_areas = len(params.imgIds), len(params.areaRng)
    area = [tuple(a) for a in params.areaRng].index((0 ** 2, 1e5 ** 2))
    thresholds = len(params.iouThrs)
    categories = []
    for k in range(len(params.catIds)):
        start = k * n_areas * n_images + area * n_images
        entries = evaluator.evalImgs[start : start + n_images]
        categories.append(_category(entries, n_images, thresholds))
    return MatchTable(n_images, tuple(categories), thresholds)


def _category(entries: list, n_images: int, thresholds: int) -> CategoryMatches:
    gt = np.array([0 if e is None else int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)) for e in entries])
    kept = [(i, e) for i, e in enumerate(entries) if e is not None]
    if not kept:
        empty = np.zeros((thresholds, 0), dtype=bool)
        return CategoryMatches(np.zeros(0, dtype=np.int64), empty, empty, gt, present=False)
    scores = np.concatenate([np.asarray(e["dtScores"], dtype=np.float64) for _, e in kept])
    image = np.concatenate([np.full(len(e["dtScores"]), i, dtype=np.int64) for i, e in kept])
    matched = np.concatenate([np.asarray(e["dtMatches"]).reshape(thresholds, -1) for _, e in kept], axis=1) != 0
    ignored = np.concatenate([np.asarray(e["dtIgnore"]).reshape(thresholds, -1) for _, e in kept], axis=1).astype(bool)
    order = np.argsort(-scores, kind="mergesort")  # pycocotools' tie order
    return CategoryMatches(image[order], (matched & ~ignored)[:, order], (~matched & ~ignored)[:, order], gt)


def ap_of_weights(table: MatchTable, weights: np.ndarray) -> np.ndarray:
    """``(B, 3)`` AP, AP50, AP75 in [0, 1] for ``(B, N)`` integer image weights (how often each
    image occurs in a resample; all ones: the set itself); ``-1`` where no category has ground truth."""
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    per_category = [_precision(category, weights, table.iou_thresholds) for category in table.categories]
    precision = np.stack(per_category, axis=2) if per_category else np.full((len(weights), table.iou_thresholds, 0, 101), -1.0)
    # (B, T, K, R); COCO's mean is over every entry above -1, per resample.
    out = np.stack([_mean_valid(precision), _mean_valid(precision[:, _IOU_INDEX["AP50"]]),
                    _mean_valid(precision[:, _IOU_INDEX["AP75"]])], axis=1)
    return out


def _mean_valid(values: np.ndarray) -> np.ndarray:
    """Per resample, the mean of the entries above -1 of ``(B, T, K, R)`` or ``(B, K, R)``, summed
    in pycocotools' order (its precision array is ``(T, R, K)``), so the full set gives its bits."""
    flat = np.moveaxis(values, -1, -2).reshape(len(values), -1)
    out = np.full(len(values), -1.0)
    for b, row in enumerate(flat):
        valid = row[row > -1]
        if valid.size:
            out[b] = np.mean(valid)
    return out


def _precision(category: CategoryMatches, weights: np.ndarray, thresholds: int) -> np.ndarray:
    """``(B, T, R)`` interpolated precision at the 101 recall thresholds (``-1`` without ground truth).

    Only true positives are visited: recall rises only there, so the first entry reaching a recall
    threshold is one, and the precision envelope's maximum after an entry is reached at one. The
    false positives before each are counted from cumulative sums: once for the detections false at
    every threshold (most of them), per threshold for the few matched at some."""
    batch = len(weights)
    npig = weights @ category.gt.astype(np.float64)
    out = np.full((batch, thresholds, len(_RECALL_THRESHOLDS)), -1.0)
    if not category.present:
        return out
    scored = npig > 0
    out[scored] = 0.0
    w = weights[:, category.image]  # (B, D)
    always = category.fp.all(axis=0)
    always_cum = _cumsum0(w[:, always])
    always_before = np.cumsum(always) - always  # per entry: always-false entries before it
    for t in range(thresholds):
        hits = np.flatnonzero(category.tp[t])
        if not hits.size:
            continue
        sometimes = category.fp[t] & ~always
        sometimes_before = np.cumsum(sometimes) - sometimes
        tp = np.cumsum(w[:, hits], axis=1)
        fp = always_cum[:, always_before[hits]] + _cumsum0(w[:, sometimes])[:, sometimes_before[hits]]
        precision = tp / (fp + tp + _EPS)
        precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # the envelope
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = tp / npig[:, None]
        index = _first_reaching(recall)
        values = np.take_along_axis(precision, np.minimum(index, hits.size - 1), axis=1)
        out[scored, t] = np.where(index < hits.size, values, 0.0)[scored]
    return out


def _first_reaching(recall: np.ndarray) -> np.ndarray:
    """``(B, R)``: per row of the nondecreasing ``(B, G)`` recall, the first index reaching each
    recall threshold (``np.searchsorted(row, thresholds, side="left")`` row by row, with the same
    float comparisons): an entry reaches threshold j when more than j thresholds are <= it."""
    batch, slots = len(recall), len(_RECALL_THRESHOLDS) + 1
    reached = np.searchsorted(_RECALL_THRESHOLDS, recall, side="right")  # (B, G)
    counts = np.bincount((np.arange(batch)[:, None] * slots + reached).ravel(), minlength=batch * slots)
    return np.cumsum(counts.reshape(batch, slots), axis=1)[:, :-1]


def _cumsum0(values: np.ndarray) -> np.ndarray:
    """Cumulative sums along axis 1 with a leading 0 column: ``[:, j]`` is the sum of the first j."""
    return np.concatenate([np.zeros((len(values), 1)), np.cumsum(values, axis=1)], axis=1)


@dataclass(frozen=True)
class Interval:
    """A point estimate and its 95% percentile bootstrap interval, both in COCO points (0..100)."""

    point: float
    low: float
    high: float
    se: float

    def pair(self) -> list[float]:
        return [self.low, self.high]

    def __str__(self) -> str:
        return f"{self.point:.2f} [{self.low:.2f}, {self.high:.2f}]"


@dataclass(frozen=True)
class PairedBootstrap:
    """Each metric's interval for the reference, the deployed model and deployed minus reference."""

    reference: dict[str, Interval]
    deployed: dict[str, Interval]
    delta: dict[str, Interval]
    images: int
    resamples: int
    seed: int

    def to_dict(self) -> dict:
        """Intervals as ``[low, high]`` in points, as ``verify --json`` stores them."""
        return {"images": self.images, "resamples": self.resamples, "seed": self.seed, "level": 0.95,
                **{f"{name}_points_ci95": {m: v[m].pair() for m in METRICS}
                   for name, v in (("reference", self.reference), ("deployed", self.deployed), ("delta", self.delta))},
                "delta_points_se": {m: self.delta[m].se for m in METRICS}}


def resample_weights(images: int, resamples: int, seed: int) -> np.ndarray:
    """``(resamples, images)`` multiplicities of a bootstrap over images (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(images, np.full(images, 1.0 / images), size=resamples).astype(np.float64)


def bootstrap_ap(tables: list[MatchTable], *, resamples: int = 1000, seed: int = 0, chunk: int = 100) -> list[np.ndarray]:
    """``(resamples, 3)`` AP/AP50/AP75 (points) of each table on the same resampled image sets."""
    images = tables[0].num_images
    if any(t.num_images != images for t in tables):
        raise ValueError("paired tables must cover the same images")
    weights = resample_weights(images, resamples, seed)
    return [100 * np.concatenate([ap_of_weights(t, weights[s : s + chunk]) for s in range(0, resamples, chunk)])
            for t in tables]


def paired_bootstrap(reference: MatchTable, deployed: MatchTable, *, resamples: int = 1000, seed: int = 0) -> PairedBootstrap:
    """Point estimates (the full set) and 95% intervals of both detectors' AP and their difference."""
    ones = np.ones((1, reference.num_images))
    points = [100 * ap_of_weights(t, ones)[0] for t in (reference, deployed)]
    samples = bootstrap_ap([reference, deployed], resamples=resamples, seed=seed)

    def intervals(point: np.ndarray, sample: np.ndarray) -> dict[str, Interval]:
        return {m: interval(float(point[j]), sample[:, j]) for j, m in enumerate(METRICS)}

    return PairedBootstrap(intervals(points[0], samples[0]), intervals(points[1], samples[1]),
                           intervals(points[1] - points[0], samples[1] - samples[0]),
                           reference.num_images, resamples, seed)


def bootstrap_intervals(table: MatchTable, *, resamples: int = 1000, seed: int = 0) -> dict[str, Interval]:
    """One detector's AP, AP50 and AP75 (points) with 95% intervals over its images."""
    point = 100 * ap_of_weights(table, np.ones((1, table.num_images)))[0]
    (sample,) = bootstrap_ap([table], resamples=resamples, seed=seed)
    return {m: interval(float(point[j]), sample[:, j]) for j, m in enumerate(METRICS)}


def interval(point: float, sample: np.ndarray) -> Interval:
    """95% percentile interval of ``sample`` around ``point`` (resamples without ground truth dropped)."""
    sample = sample[np.isfinite(sample)]
    if not sample.size:
        return Interval(point, point, point, 0.0)
    low, high = np.percentile(sample, [2.5, 97.5])
    return Interval(point, float(low), float(high), float(sample.std(ddof=1)) if sample.size > 1 else 0.0)


#: Two-sided 95%: the half-width of an interval is about this many standard errors.
Z95 = 1.959964
#: Fewest images whose bootstrap interval is evidence. On fewer, the 95% interval of an AP difference
#: covered the true difference far less often than 95% (simulated val sets drawn from a population,
#: bench/bootstrap_bench.py, bench/RESULTS.md 2026-12-07: 71.5% on 3 images, 81.5% on 5, 88.0% on
#: 10, 95.0% on 20, 94.5% on 30), and models that agree on every image give a zero-width interval
#: whatever they do elsewhere: a "budget met" on 3 images said nothing.
MIN_IMAGES = 20


def images_needed(se: float, images: int, margin: float) -> int | None:
    """Images for a 95% bound to lie within ``margin`` points of the estimate, from the standard
    error ``se`` measured on ``images`` (it scales as ``1/sqrt(n)``), and at least
    :data:`MIN_IMAGES`; None when ``margin <= 0`` (no number of images shows what the estimate
    itself contradicts)."""
    if margin <= 0:
        return None
    return max(MIN_IMAGES, int(np.ceil(images * (Z95 * se / margin) ** 2)))
