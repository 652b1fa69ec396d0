"""Bootstrap intervals for COCO AP: the point estimate is pycocotools' COCOeval exactly, a resample
equals COCOeval on the resampled image set, and the intervals are deterministic in the seed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retina_edge.metrics.bootstrap import ap_of_weights, paired_bootstrap
from retina_edge.metrics.evaluate import coco_evaluate


def synthetic_set(rng: np.random.Generator, images: int, *, crowd: bool = True, tie_scores: bool = True):
    """(COCO gt dict, results of a detector): boxes of several sizes, some crowd, jittered and
    spurious detections, tied scores, a category never annotated and one never detected."""
    gt = {"images": [{"id": i + 1, "width": 640, "height": 480} for i in range(images)],
          "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 3, 4)], "annotations": []}
    results = []
    for image in range(1, images + 1):
        for _ in range(rng.integers(0, 6)):
            category = int(rng.choice([1, 2, 3]))  # 4 is never annotated
            w, h = rng.uniform(4, 200, size=2)
            x, y = rng.uniform(0, 400), rng.uniform(0, 250)
            is_crowd = int(crowd and rng.random() < 0.05)
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": image, "category_id": category,
                                      "bbox": [x, y, w, h], "area": w * h, "iscrowd": is_crowd})
            for _ in range(rng.integers(0, 3)):  # duplicates and misses
                jitter = rng.normal(0, 0.12, size=4) * [w, h, w, h]
                if category != 3:  # 3 is never detected
                    results.append(_result(rng, image, category, [x + jitter[0], y + jitter[1], w + jitter[2], h + jitter[3]], tie_scores))
        for _ in range(rng.integers(0, 4)):  # spurious, some of category 4
            results.append(_result(rng, image, int(rng.choice([1, 2, 4])), [*rng.uniform(0, 300, size=2), *rng.uniform(5, 150, size=2)], tie_scores))
    return gt, results


def _result(rng, image, category, box, tie_scores):  # noqa: ANN001, ANN202
    score = round(float(rng.choice([0.5, 0.7]) if tie_scores and rng.random() < 0.2 else rng.random()), 5)
    return {"image_id": image, "category_id": category, "bbox": [float(max(v, 1.0)) for v in box], "score": score}


def evaluate(tmp_path, gt: dict, results: list[dict], name: str = "gt.json"):  # noqa: ANN201
    path = tmp_path / name
    path.write_text(json.dumps(gt))
    return coco_evaluate(path, results)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_point_estimate_is_cocoeval_exactly(tmp_path, seed):
    gt, results = synthetic_set(np.random.default_rng(seed), 40)
    metrics = evaluate(tmp_path, gt, results)
    got = ap_of_weights(metrics.matches, np.ones((1, 40)))[0]
    want = [metrics.summary[k] for k in ("AP", "AP50", "AP75")]
    assert got.tolist() == want  # to the bit, ties and crowd regions included
    assert 0.05 < want[0] < 0.95


def test_a_resample_is_cocoeval_on_the_resampled_images(tmp_path):
    """Weights 2 and 0 give pycocotools' AP of the set in which those images occur twice / never
    (scores without ties, so the order of equal scores from different images cannot matter)."""
    rng = np.random.default_rng(5)
    gt, results = synthetic_set(rng, 30, tie_scores=False)
    table = evaluate(tmp_path, gt, results).matches
    counts = rng.multinomial(30, np.full(30, 1 / 30))
    resampled = {"images": [], "categories": gt["categories"], "annotations": []}
    resampled_results = []
    for image in np.flatnonzero(counts):
        for copy in range(counts[image]):
            new_id = len(resampled["images"]) + 1
            resampled["images"].append({"id": new_id, "width": 640, "height": 480})
            for ann in gt["annotations"]:
                if ann["image_id"] == image + 1:
                    resampled["annotations"].append({**ann, "id": len(resampled["annotations"]) + 1, "image_id": new_id})
            resampled_results += [{**r, "image_id": new_id} for r in results if r["image_id"] == image + 1]
    want = evaluate(tmp_path, resampled, resampled_results, "resampled.json").summary
    got = ap_of_weights(table, counts[None].astype(float))[0]
    np.testing.assert_allclose(got, [want["AP"], want["AP50"], want["AP75"]], rtol=0, atol=1e-12)


def test_paired_bootstrap_is_deterministic_and_paired(tmp_path):
    rng = np.random.default_rng(3)
    gt, results = synthetic_set(rng, 60)
    worse = [{**r, "score": round(r["score"] * float(rng.uniform(0.6, 1.0)), 5)} for r in results]
    reference = evaluate(tmp_path, gt, results).matches
    deployed = evaluate(tmp_path, gt, worse).matches
    first = paired_bootstrap(reference, deployed, resamples=200, seed=7)
    assert first == paired_bootstrap(reference, deployed, resamples=200, seed=7)
    assert first != paired_bootstrap(reference, deployed, resamples=200, seed=8)
    for name in ("AP", "AP50", "AP75"):
        for part in (first.reference, first.deployed, first.delta):
            assert part[name].low <= part[name].point <= part[name].high or abs(part[name].point) < 1e-9
        assert first.delta[name].point == pytest.approx(first.deployed[name].point - first.reference[name].point)
    # Pairing: the difference varies far less than either AP does.
    assert first.delta["AP"].se < 0.5 * min(first.reference["AP"].se, first.deployed["AP"].se)
    same = paired_bootstrap(reference, reference, resamples=50, seed=0)
    assert same.delta["AP"].pair() == [0.0, 0.0]
    assert set(first.to_dict()["delta_points_ci95"]) == {"AP", "AP50", "AP75"}


def test_no_detections_at_all_still_pairs(tmp_path):
    gt, results = synthetic_set(np.random.default_rng(4), 20)
    nothing = evaluate(tmp_path, gt, [])
    assert nothing.summary["AP"] == 0.0
    assert ap_of_weights(nothing.matches, np.ones((1, 20)))[0].tolist() == [0.0, 0.0, 0.0]
    found = paired_bootstrap(evaluate(tmp_path, gt, results).matches, nothing.matches, resamples=20)
    assert found.delta["AP"].high < 0
