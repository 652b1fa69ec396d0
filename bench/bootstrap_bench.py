"""Paired bootstrap intervals for COCO AP: their cost, and their coverage by simulation.

A synthetic population of images (ground truth of 6 categories, a "reference" detector that finds
most objects with jittered boxes plus spurious low-score boxes, and a "deployed" one that is the
reference with per-detection score noise and extra box jitter, as INT8 does) is scored once with
pycocotools into per-image match tables. Then:

- cost: seconds for ``--resamples`` paired resamples on ``--images`` images;
- coverage: ``--sets`` val sets of ``--val`` images drawn from the population; on each, the 95%
  interval of the paired AP difference, and whether it contains the difference measured on the
  whole population (``--population`` images). A calibrated interval contains it about 95% of the
  time (slightly more, since the population is finite and the sets are drawn from it).

    python bench/bootstrap_bench.py --images 500 --resamples 1000 --population 6000 --val 100 --sets 200
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from retina_edge.metrics.bootstrap import ap_of_weights, paired_bootstrap
from retina_edge.metrics.evaluate import coco_evaluate


def population(rng: np.random.Generator, images: int) -> tuple[dict, list[dict], list[dict]]:
    """(ground truth, reference results, deployed results) of ``images`` synthetic images."""
    gt = {"images": [{"id": i + 1, "width": 640, "height": 480} for i in range(images)],
          "categories": [{"id": c, "name": f"c{c}"} for c in range(1, 7)], "annotations": []}
    reference, deployed = [], []
    for image in range(1, images + 1):
        for _ in range(rng.integers(1, 7)):
            category = int(rng.integers(1, 7))
            w, h = rng.uniform(12, 220, size=2)
            x, y = rng.uniform(0, 400), rng.uniform(0, 250)
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": image, "category_id": category,
                                      "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
            if rng.random() < 0.85:
                box = np.array([x, y, w, h]) + rng.normal(0, 0.06, 4) * [w, h, w, h]
                _pair(rng, image, category, box, rng.beta(5, 2), reference, deployed)
        for _ in range(rng.integers(5, 30)):
            box = np.array([*rng.uniform(0, 400, 2), *rng.uniform(8, 150, 2)])
            _pair(rng, image, int(rng.integers(1, 7)), box, rng.beta(1.2, 6), reference, deployed)
    return gt, reference, deployed


def _pair(rng, image, category, box, score, reference, deployed) -> None:  # noqa: ANN001
    reference.append({"image_id": image, "category_id": category, "bbox": np.maximum(box, 1).tolist(), "score": float(score)})
    jitter = box + rng.normal(0, 0.012, 4) * [box[2], box[3], box[2], box[3]]
    noisy = float(np.clip(score + rng.normal(0, 0.02), 0.001, 1))
    deployed.append({"image_id": image, "category_id": category, "bbox": np.maximum(jitter, 1).tolist(), "score": noisy})


def tables(rng: np.random.Generator, images: int, scratch: Path):  # noqa: ANN201
    gt, reference, deployed = population(rng, images)
    path = scratch / f"gt{images}.json"
    path.write_text(json.dumps(gt))
    return coco_evaluate(path, reference).matches, coco_evaluate(path, deployed).matches


def cpu_name() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--population", type=int, default=6000)
    parser.add_argument("--val", type=int, default=100)
    parser.add_argument("--sets", type=int, default=200)
    parser.add_argument("--set-resamples", type=int, default=500, help="resamples per simulated val set")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"CPU: {cpu_name()}")
    with tempfile.TemporaryDirectory() as scratch:
        if args.images:
            reference, deployed = tables(rng, args.images, Path(scratch))
            detections = sum(c.image.size for c in reference.categories)
            start, cpu = time.perf_counter(), time.process_time()
            result = paired_bootstrap(reference, deployed, resamples=args.resamples, seed=args.seed)
            print(f"cost: {args.resamples} paired resamples on {args.images} images ({detections} detections per model): "
                  f"{time.perf_counter() - start:.2f} s wall, {time.process_time() - cpu:.2f} s CPU (load average "
                  f"{os.getloadavg()[0]:.1f}); delta AP {result.delta['AP']} points")
        if args.sets:
            reference, deployed = tables(rng, args.population, Path(scratch))
            ones = np.ones((1, args.population))
            truth = 100 * float(ap_of_weights(deployed, ones)[0, 0] - ap_of_weights(reference, ones)[0, 0])
            covered, widths, points = 0, [], []
            for index in range(args.sets):
                chosen = rng.choice(args.population, args.val, replace=False)
                found = paired_bootstrap(reference.subset(chosen), deployed.subset(chosen), resamples=args.set_resamples,
                                         seed=index).delta["AP"]
                covered += found.low <= truth <= found.high
                widths.append(found.high - found.low)
                points.append(found.point)
            print(f"coverage: population of {args.population} images, delta AP {truth:+.3f} points; {args.sets} val sets of "
                  f"{args.val} images, {args.set_resamples} resamples each: the 95% interval contains it in {covered}/"
                  f"{args.sets} = {covered / args.sets:.1%}; mean width {np.mean(widths):.2f} points; spread (SD) of the "
                  f"sets' point estimates {np.std(points, ddof=1):.3f} vs mean bootstrap width/3.92 {np.mean(widths) / 3.92:.3f}")


if __name__ == "__main__":
    main()
