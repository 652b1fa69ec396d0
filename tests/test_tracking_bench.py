"""bench/tracking_bench.py's scoring (its timings are not tested): its IoU matching for motmetrics
(whose own IoU helper fails under NumPy 2), HOTA against ``trackers``' own evaluation of the same
files, and the ceiling's identities, on ground truth from both synthetic videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import tracking_bench

    return tracking_bench


def scores(mm, accumulator) -> dict:
    summary = mm.metrics.create().compute(accumulator, metrics=["mota", "idf1", "num_switches"])
    return {name: float(summary[name].iloc[0]) for name in summary.columns}


def swap_after(lines: list[str], frame: int, first: str = "1", second: str = "2") -> list[str]:
    """From ``frame`` on, objects ``first`` and ``second`` carry each other's ids."""
    return [",".join([f, {first: second, second: first}.get(i, i), *rest]) if int(f) > frame else line
            for line in lines for f, i, *rest in [line.split(",")]]


def test_scoring_ground_truth_against_itself_and_against_a_swap(bench, tmp_path):
    import motmetrics as mm

    from retina_edge.data.synth_video import SyntheticVideo, write_mot_ground_truth

    gt = write_mot_ground_truth(tmp_path / "gt.txt", SyntheticVideo(seed=1, objects=4), 20)
    truth = mm.io.loadtxt(str(gt), fmt="mot15-2D")
    assert scores(mm, bench.accumulate(mm, truth, truth)) == {"mota": 1.0, "idf1": 1.0, "num_switches": 0.0}
    (tmp_path / "hyp.txt").write_text("\n".join(swap_after(gt.read_text().splitlines(), 10)) + "\n")
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


def test_scores_match_trackers_evaluation_of_the_same_files(bench, tmp_path):
    """IDF1 (motmetrics) and HOTA (our per-video counts, combined as TrackEval combines sequences)
    against ``trackers``' evaluate_mot_sequence and aggregate_hota_metrics on the same files (its
    loader scores MOTChallenge's pedestrian class only, so its copy of the truth is class 1)."""
    import motmetrics as mm
    from trackers.eval import aggregate_hota_metrics, evaluate_mot_sequence

    from retina_edge.data.moving_video import MovingCameraVideo
    from retina_edge.data.synth_video import write_mot_ground_truth

    counts, theirs = [], []
    for number, seed in enumerate((1, 2)):
        gt = write_mot_ground_truth(tmp_path / f"gt{number}.txt", MovingCameraVideo(seed=seed), 30)
        lines = gt.read_text().splitlines()
        (tmp_path / f"gt{number}-class1.txt").write_text("".join(",".join([*line.split(",")[:7], "1", line.split(",")[8]])
                                                                 + "\n" for line in lines))
        found = [line for k, line in enumerate(swap_after(lines, 12, *sorted({line.split(",")[1] for line in lines})[:2]))
                 if k % 7]  # a swap and some misses
        (tmp_path / f"hyp{number}.txt").write_text("\n".join(found) + "\n")
        truth = mm.io.loadtxt(str(gt), fmt="mot15-2D")
        counts.append(bench.video_scores(mm, truth, "\n".join(found) + "\n", tmp_path, 0.0))
        theirs.append(evaluate_mot_sequence(tmp_path / f"gt{number}-class1.txt", tmp_path / f"hyp{number}.txt",
                                            metrics=["HOTA", "Identity"]))
        idf1, _, hota = bench.scores(counts[-1])
        assert idf1 == pytest.approx(theirs[-1].Identity.IDF1, abs=1e-9) and hota == pytest.approx(theirs[-1].HOTA.HOTA)
        assert 0.5 < hota < 1 and idf1 < 1
    combined = aggregate_hota_metrics([result.HOTA.to_dict(include_arrays=True, arrays_as_list=False)
                                       for result in theirs])
    assert bench.scores(np.sum(counts, axis=0))[2] == pytest.approx(combined["HOTA"])


def test_true_identities_give_each_object_to_one_detection_per_frame(bench):
    """Two boxes on one object: the better one takes the object's identity, the other its own (the
    same identity twice in a frame made motmetrics count negative false identities, IDF1 above 1)."""
    from retina_edge.data.synth_video import SyntheticVideo
    from retina_edge.runtime.core.results import Detections

    scene = SyntheticVideo(seed=1, objects=2)
    objects = scene.boxes(0)
    (_, _, (x, y, w, h)), _ = objects
    boxes = np.array([[x, y, x + w, y + h], [x + 1, y, x + w + 1, y + h]], np.float32)
    truth = bench.true_identities(Detections(boxes, np.array([0.9, 0.8], np.float32), np.zeros(2, np.int64)), objects, 0.5)
    assert truth[0] == 1 and truth[1] >= 1000


def test_the_trackers_compared_are_the_registered_ones(bench, monkeypatch):
    """A tracker added to the table (a plugin's, say) is a choice, and compared by default."""
    import sys

    from retina_edge.runtime.video.tracking import TRACKERS, TrackerSpec, register_tracker, unregister_tracker

    compared = []
    monkeypatch.setattr(bench, "tracker_cost", lambda objects, trackers: compared.append(trackers))
    register_tracker(TrackerSpec("nearest", lambda options: None, description="a test's"))
    try:
        for chosen in (["--trackers", "nearest", "sort"], []):  # no video set, the cost alone
            monkeypatch.setattr(sys, "argv", ["tracking_bench.py", "--model", "m.onnx", "--sets", "--objects", "1", *chosen])
            bench.main()
        assert compared == [("nearest", "sort"), TRACKERS.names()]
        assert {"bytetrack", "botsort", "ocsort", "sort", "nearest"} <= set(compared[1])
    finally:
        unregister_tracker("nearest")
