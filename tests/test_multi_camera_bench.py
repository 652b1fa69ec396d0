"""bench/multi_camera_bench.py's scoring arithmetic (its timings are not tested): its IoU matching
for motmetrics (whose own IoU helper fails under NumPy 2) on ground truth from the synthetic video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import multi_camera_bench

    return multi_camera_bench


def scores(mm, accumulator) -> dict:
    summary = mm.metrics.create().compute(accumulator, metrics=["mota", "idf1", "num_switches"])
    return {name: float(summary[name].iloc[0]) for name in summary.columns}


def test_scoring_ground_truth_against_itself_and_against_a_swap(bench, tmp_path):
    import motmetrics as mm

    from retina_edge.data.synth_video import SyntheticVideo, write_mot_ground_truth

    gt = write_mot_ground_truth(tmp_path / "gt.txt", SyntheticVideo(seed=1, objects=4), 20)
    truth = mm.io.loadtxt(str(gt), fmt="mot15-2D")
    assert scores(mm, bench.accumulate(mm, truth, truth)) == {"mota": 1.0, "idf1": 1.0, "num_switches": 0.0}
    lines = gt.read_text().splitlines()
    # from frame 11 on, objects 1 and 2 carry each other's ids: two identity switches
    swapped = [",".join([f, {"1": "2", "2": "1"}.get(i, i), *rest]) if int(f) > 10 else line
               for line in lines for f, i, *rest in [line.split(",")]]
    (tmp_path / "hyp.txt").write_text("\n".join(swapped) + "\n")
    result = scores(mm, bench.accumulate(mm, truth, mm.io.loadtxt(str(tmp_path / "hyp.txt"), fmt="mot15-2D")))
    assert result["num_switches"] == 2 and result["idf1"] < 1.0


def test_objects_below_the_visibility_bar_are_ignored_with_what_was_found_on_them(bench, tmp_path):
    import motmetrics as mm

    from retina_edge.data.synth_video import SyntheticVideo, write_mot_ground_truth

    video = SyntheticVideo(seed=1, objects=6)
    seen = np.array([video.visibility(i) for i in range(20)])
    assert ((seen >= 0) & (seen <= 1)).all() and (seen[:, -1] == 1).all()  # the last drawn is never covered
    truth = mm.io.loadtxt(str(write_mot_ground_truth(tmp_path / "gt.txt", video, 20)), fmt="mot15-2D")
    summary = mm.metrics.create().compute(bench.accumulate(mm, truth, truth, min_visibility=1.01),
                                          metrics=["num_objects", "num_false_positives"])
    assert summary["num_objects"].iloc[0] == 0 and summary["num_false_positives"].iloc[0] == 0


def test_true_identities_give_each_object_to_one_detection_per_frame(bench):
    """Two boxes on one object: the better one takes the object's identity, the other its own (the
    same identity twice in a frame made motmetrics count negative false identities, IDF1 above 1)."""
    from types import SimpleNamespace

    from retina_edge.data.synth_video import SyntheticVideo
    from retina_edge.runtime.core.results import Detections

    scene = SyntheticVideo(seed=1, objects=2)
    (_, _, (x, y, w, h)), _ = scene.boxes(0)
    boxes = np.array([[x, y, x + w, y + h], [x + 1, y, x + w + 1, y + h]], np.float32)
    result = SimpleNamespace(index=0, image=None, detections=Detections(boxes, np.array([0.9, 0.8], np.float32),
                                                                           np.zeros(2, np.int64)))
    stub = SimpleNamespace(update=lambda *args: np.full(2, -1))
    truth = bench.identities(result, (stub, stub), scene, 0.5)[2]
    assert truth[0] == 0 and truth[1] >= 1000
