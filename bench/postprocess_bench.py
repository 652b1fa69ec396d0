"""Host decode + NMS speed: 5 levels x 1000 candidates per image, vs the PyTorch postprocess.

Candidates are built like a detector's: anchors of a 512x512 input near ~20 objects, small
regression deltas, scores peaked on the right class. The host path (NumPy decode, clip, score
threshold, class-aware NMS, top-300) is timed per image and its detections are matched against
the PyTorch reference's (``retina_edge.model.postprocess`` logic) on the same candidates.

    python bench/postprocess_bench.py --images 50 --repeats 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def make_candidates(rng: np.random.Generator, per_level: int = 1000, num_classes: int = 80, size: int = 512):
    from retina_edge.anchors import feature_shapes_for, grid_anchors
    from retina_edge.config import AnchorConfig

    levels = grid_anchors(feature_shapes_for((size, size)), (size, size), AnchorConfig())
    centres = rng.uniform(30, size - 30, (20, 2))
    classes = rng.integers(0, num_classes, 20)
    deltas, anchors, scores, labels = [], [], [], []
    for level in levels:
        level_centres = (level[:, :2] + level[:, 2:]) / 2
        distance = np.min(np.linalg.norm(level_centres[:, None] - centres[None], axis=2), axis=1)
        # (anchor, class) pairs: on small levels an anchor appears with several classes.
        pick = rng.choice(np.argsort(distance)[:per_level], per_level)
        nearest = np.argmin(np.linalg.norm(level_centres[pick][:, None] - centres[None], axis=2), axis=1)
        anchors.append(level[pick])
        deltas.append(rng.normal(0, 0.1, (per_level, 4)).astype(np.float32))
        scores.append(np.clip(rng.beta(2, 5, per_level) + 0.05, 0, 1).astype(np.float32))
        labels.append(np.where(rng.random(per_level) < 0.8, classes[nearest], rng.integers(0, num_classes, per_level)))
    return (np.concatenate(deltas), np.concatenate(anchors), np.concatenate(scores), np.concatenate(labels).astype(np.int64))


def host_postprocess(deltas, anchors, scores, labels, config, size):  # noqa: ANN001, ANN201
    from retina_edge.runtime.core.decode import decode_boxes
    from retina_edge.runtime.core.postprocess import clip_boxes, select_detections

    boxes = clip_boxes(decode_boxes(deltas, anchors), (size, size))
    return select_detections(boxes, scores, labels, config)


def torch_postprocess(deltas, anchors, scores, labels, config, size):  # noqa: ANN001, ANN201
    import torch

    from retina_edge.model.box_coder import BoxCoder
    from retina_edge.model.boxes import batched_nms, clip_boxes_to_image

    boxes = clip_boxes_to_image(BoxCoder().decode(torch.from_numpy(deltas), torch.from_numpy(anchors)), (size, size))
    scores_t, labels_t = torch.from_numpy(scores), torch.from_numpy(labels)
    keep = torch.where(scores_t > config.score_thresh)[0]
    boxes, scores_t, labels_t = boxes[keep], scores_t[keep], labels_t[keep]
    order = batched_nms(boxes, scores_t, labels_t, config.nms_thresh)[: config.detections_per_img]
    return boxes[order].numpy(), scores_t[order].numpy(), labels_t[order].numpy()


def main() -> None:
    from retina_edge.config import PostprocessConfig
    from retina_edge.metrics.matching import match_detections

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    config = PostprocessConfig()
    times, matched, total, kept = [], 0, 0, []
    for _ in range(args.images):
        candidates = make_candidates(rng)
        for _ in range(args.repeats):
            start = time.perf_counter()
            ours = host_postprocess(*candidates, config, 512)
            times.append(time.perf_counter() - start)
        ref = torch_postprocess(*candidates, config, 512)
        result = match_detections(ref, ours)
        matched, total = matched + result.matched, total + result.num_reference
        kept.append(len(ours[1]))
    print(f"host decode + NMS, 5 levels x 1000 candidates: median {statistics.median(times) * 1e3:.2f} ms, "
          f"p90 {np.percentile(times, 90) * 1e3:.2f} ms per image ({len(times)} runs)")
    print(f"detections kept per image: median {statistics.median(kept)}; "
          f"matched to the PyTorch postprocess: {matched}/{total} ({matched / total:.2%})")


if __name__ == "__main__":
    main()
