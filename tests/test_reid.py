"""Re-identification of lost tracks (runtime/reid.py): an object back after its track was lost keeps
its ID when it looks the same and could have got there; look-alikes in view, other colours, places
too far for the time gone by, and tracks older than the memory get new IDs."""

from __future__ import annotations

import numpy as np
import pytest

from retina_edge.runtime.reid import TrackStitcher, colour_histogram
from retina_edge.runtime.results import Detections

RED, GREEN = (220, 30, 30), (30, 200, 40)


def scene(*objects: tuple[tuple[int, int], tuple[int, int, int]], size: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A grey 240x320 frame with a square of ``size`` px per ``((x, y), colour)``, and their boxes."""
    image = np.full((240, 320, 3), 128, np.uint8)
    boxes = []
    for (x, y), colour in objects:
        image[y : y + size, x : x + size] = colour
        boxes.append([x, y, x + size, y + size])
    return image, np.array(boxes, np.float32).reshape(-1, 4)


def stitch(stitcher: TrackStitcher, ids: list[int], objects, time: float) -> list[int]:  # noqa: ANN001
    image, boxes = scene(*objects)
    return stitcher.update(np.array(ids), boxes, image, time).tolist()


def test_histogram_tells_colours_apart_and_skips_slivers():
    image, boxes = scene(((10, 10), RED), ((100, 10), RED), ((200, 10), GREEN))
    red, red_again, green = (colour_histogram(image, box) for box in boxes)
    assert np.sqrt(red * red_again).sum() == pytest.approx(1.0)
    assert np.sqrt(red * green).sum() < 0.1
    assert colour_histogram(image, np.array([10, 10, 12, 50])) is None


def test_a_lost_object_back_keeps_its_id_and_others_do_not_take_it():
    stitcher = TrackStitcher(min_similarity=0.8, seconds=10.0)
    first = stitch(stitcher, [3], [((10, 10), RED)], 0.0)
    assert stitch(stitcher, [9], [((30, 10), RED)], 1.0) == first  # the tracker's new ID 9: the same object
    stitch(stitcher, [], [], 1.5)
    other = stitch(stitcher, [11], [((40, 10), GREEN)], 2.0)  # another colour at that place: a new ID
    assert other != first
    # two red ones in view: never one ID, whatever their look
    both = stitch(stitcher, [9, 12], [((40, 10), RED), ((150, 100), RED)], 2.1)
    assert both[0] == first[0] and both[1] not in (first[0], other[0])


def test_too_far_for_the_time_or_too_long_ago_is_a_new_object():
    stitcher = TrackStitcher(min_similarity=0.8, seconds=10.0)
    first = stitch(stitcher, [1], [((0, 0), RED)], 0.0)
    # 0.1 s later 280 px away (7 sizes): further than MAX_SPEED sizes per second allow
    assert stitch(stitcher, [2], [((280, 200), RED)], 0.1) != first
    stitcher = TrackStitcher(min_similarity=0.8, seconds=10.0)
    first = stitch(stitcher, [1], [((0, 0), RED)], 0.0)
    assert stitch(stitcher, [2], [((0, 0), RED)], 10.5) != first  # forgotten after `seconds`
    assert stitch(stitcher, [-1], [((0, 0), RED)], 10.6) == [-1]  # unconfirmed stays -1


@pytest.mark.parametrize("reid", [0.8, None])
def test_byte_tracker_keeps_the_id_of_an_object_unseen_past_its_memory(reid):
    """ByteTrack forgets a track after lost_frames (30) frames; with re-identification the object
    returning after 45 frames gets its old ID, without it a new one."""
    pytest.importorskip("trackers")
    from retina_edge.runtime.tracking import ByteTracker, TrackerOptions

    tracker = ByteTracker(TrackerOptions(reid_similarity=reid))
    score, label = np.array([0.9], np.float32), np.zeros(1, np.int64)
    before = [tracker.update(Detections(boxes, score, label), None, image).tolist()
              for image, boxes in (scene(((10 + 2 * step, 10), RED)) for step in range(5))]
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    for _ in range(45):
        tracker.update(empty, None, scene()[0])
    after = [tracker.update(Detections(boxes, score, label), None, image).tolist()
             for image, boxes in (scene(((60 + 2 * step, 10), RED)) for step in range(3))]
    assert before[-1][0] >= 0 and after[-1][0] >= 0
    assert (after[-1] == before[-1]) == (reid is not None)


@pytest.mark.parametrize(("flags", "similarity"), [([], 0.8), (["--track-reid", "0.9"], 0.9), (["--track-reid", "0"], None)])
def test_detect_track_reid_flag(flags, similarity):
    import argparse

    from retina_edge.cli.detect import add_arguments
    from retina_edge.cli.stream import pipeline_config

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--model", "m.onnx", "--source", "a.mp4", "--track", *flags])
    assert pipeline_config(args, None).tracking.reid_similarity == similarity
