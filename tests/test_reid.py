"""Appearance checks on a tracker's IDs (runtime/video/reid.py): an object back after its track was lost
keeps its ID when it looks the same and could have got there (look-alikes in view, other colours,
places too far for the time gone by, and tracks older than the memory get new IDs); two tracks the
tracker swapped where they touched get their IDs back; a track moved onto another object lets its
ID go back to its object; a revived track never shows an ID already in view."""

from __future__ import annotations

import numpy as np
import pytest

from retina_edge.runtime.video.reid import TrackStitcher, colour_histogram, overlap_fractions
from retina_edge.runtime.core.results import Detections

RED, GREEN = (220, 30, 30), (30, 200, 40)
# Two-tone objects (top 70% of the square, bottom 30%): each looks somewhat like the other (0.8),
# too alike for a release (under 0.5), unlike enough for an exchange.
RED_GREEN, GREEN_RED = (RED, GREEN), (GREEN, RED)


def scene(*objects: tuple[tuple[int, int], tuple], size: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A grey 240x320 frame with a square of ``size`` px per ``((x, y), colour)`` (one RGB colour or
    a (top, bottom) pair), and their boxes."""
    image = np.full((240, 320, 3), 128, np.uint8)
    boxes = []
    for (x, y), colour in objects:
        top, bottom = colour if isinstance(colour[0], tuple) else (colour, colour)
        image[y : y + size, x : x + size] = bottom
        image[y : y + size * 7 // 10, x : x + size] = top
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


def test_overlap_fractions_are_of_the_smaller_box():
    boxes = np.array([[0, 0, 40, 40], [30, 0, 50, 10], [100, 100, 110, 110]], np.float64)
    expected = [[0, 100 / 200, 0], [100 / 200, 0, 0], [0, 0, 0]]
    np.testing.assert_allclose(overlap_fractions(boxes), expected)


def test_two_tracks_swapped_where_they_touched_get_their_ids_back():
    stitcher = TrackStitcher(min_similarity=0.8, seconds=10.0)
    first, second = stitch(stitcher, [1, 2], [((10, 10), RED_GREEN), ((120, 10), GREEN_RED)], 0.0)
    stitch(stitcher, [1, 2], [((50, 10), RED_GREEN), ((85, 10), GREEN_RED)], 0.1)  # the boxes touch (5 px)
    # the tracker comes out of the crossing with its IDs the wrong way round
    swapped = [((30, 10), RED_GREEN), ((140, 10), GREEN_RED)]
    assert stitch(stitcher, [2, 1], swapped, 0.2) == [first, second]
    assert stitch(stitcher, [2, 1], swapped, 0.3) == [first, second]


def test_tracks_that_never_touched_are_not_exchanged():
    """The tracker cannot have swapped two tracks that never touched: a look somewhat off (over
    RELEASE_BELOW) does not move an ID."""
    stitcher = TrackStitcher(min_similarity=0.8, seconds=10.0)
    first, second = stitch(stitcher, [1, 2], [((10, 10), RED_GREEN), ((200, 10), GREEN_RED)], 0.0)
    assert stitch(stitcher, [2, 1], [((10, 10), RED_GREEN), ((200, 10), GREEN_RED)], 0.1) == [second, first]


def test_ids_far_off_their_looks_are_let_go_and_taken_by_their_objects():
    """Each box that looks unlike its ID (under RELEASE_BELOW) lets it go, whether or not the boxes
    touched: the red box first takes a new ID (red's is in view), the green one then green's, freed
    a moment before, and the red box, its new ID still without a look, red's."""
    stitcher = TrackStitcher(min_similarity=0.8, seconds=10.0)
    red, green = stitch(stitcher, [1, 2], [((10, 10), RED), ((200, 10), GREEN)], 0.0)
    assert stitch(stitcher, [2, 1], [((10, 10), RED), ((200, 10), GREEN)], 0.1) == [red, green]


def test_a_covered_new_track_is_stitched_at_its_first_clear_look():
    """A new track mostly behind another box is not judged by a look that is mostly the other
    object's (here: like the lost green one): it gets a new ID, traded for its own once clear."""
    stitcher = TrackStitcher(min_similarity=0.8, seconds=10.0)
    red, green = stitch(stitcher, [1, 2], [((10, 10), RED), ((60, 10), GREEN)], 0.0)
    stitch(stitcher, [], [], 0.1)  # both lost
    # back as the tracker's tracks 3 and 4, the red one 62% behind the green one (drawn over it)
    covered = stitch(stitcher, [3, 4], [((30, 10), RED), ((45, 10), GREEN)], 0.2)
    assert not {red, green} & set(covered)
    assert stitch(stitcher, [3, 4], [((0, 10), RED), ((70, 10), GREEN)], 0.3) == [red, green]


def test_a_track_moved_onto_another_object_lets_its_id_go_back_to_its_object():
    stitcher = TrackStitcher(min_similarity=0.8, seconds=10.0)
    red, green = stitch(stitcher, [1, 2], [((10, 10), RED), ((200, 10), GREEN)], 0.0)
    # the red object is missed and the tracker moves track 1 onto the green one (track 2 lost)
    assert stitch(stitcher, [1], [((200, 10), GREEN)], 0.1) == [green]
    # the red object is back as the tracker's new track 3: it gets its own ID again
    assert stitch(stitcher, [1, 3], [((202, 10), GREEN), ((20, 10), RED)], 0.2) == [green, red]


def test_an_id_let_go_is_free_for_its_object_back_in_the_same_frame():
    stitcher = TrackStitcher(min_similarity=0.8, seconds=10.0)
    red, green = stitch(stitcher, [1, 2], [((10, 10), RED), ((200, 10), GREEN)], 0.0)
    # track 1 moved onto the green object while the red one is back as the tracker's new track 3
    assert stitch(stitcher, [1, 3], [((200, 10), GREEN), ((20, 10), RED)], 0.1) == [green, red]


def test_tracks_in_view_keep_their_ids_when_the_memory_is_pruned():
    """Tracks never clear enough to learn a look (two boxes overlapping) keep their IDs while a
    thousand short-lived tracker IDs come and go and the ID map is pruned."""
    stitcher = TrackStitcher(min_similarity=0.8, seconds=10.0)
    image, boxes = scene(((10, 10), RED), ((25, 10), GREEN), ((200, 200), RED), size=40)
    boxes[2] = [200, 200, 202, 202]  # a speck: no look, so no memory either
    first = stitcher.update(np.array([1, 2, 1000]), boxes, image, 0.0).tolist()[:2]
    for frame in range(1, 1100):
        assert stitcher.update(np.array([1, 2, 1000 + frame]), boxes, image, frame / 30).tolist()[:2] == first
    assert len(stitcher._stitched) <= 1025  # pruned, not growing with every tracker ID ever seen


def test_a_revived_track_never_shows_an_id_already_in_view():
    stitcher = TrackStitcher(min_similarity=0.8, seconds=10.0)
    first = stitch(stitcher, [1], [((10, 10), RED)], 0.0)
    assert stitch(stitcher, [2], [((12, 10), RED)], 0.1) == first  # the tracker's new track 2: stitched
    # the tracker revives its track 1 on another red object: not a second box with the same ID
    both = stitch(stitcher, [2, 1], [((14, 10), RED), ((150, 10), RED)], 0.2)
    assert both[0] == first[0] and both[1] != first[0]


@pytest.mark.parametrize("reid", [0.8, None])
def test_tracker_keeps_the_id_of_an_object_unseen_past_its_memory(reid):
    """ByteTrack forgets a track after lost_frames (30) frames; with re-identification the object
    returning after 45 frames gets its old ID, without it a new one."""
    pytest.importorskip("trackers")
    from retina_edge.runtime.video.tracking import TrackerOptions, make_tracker

    tracker = make_tracker(TrackerOptions(reid_similarity=reid))
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
