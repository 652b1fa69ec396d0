"""Every tracker from ``trackers`` through the runtime's chain: IDs in the detections' order, kept
through a camera's fast turn with camera-motion compensation (lost without it), and the colour
checks judging an unseen object's reach in the scene."""

from __future__ import annotations

import numpy as np
import pytest

from retina_edge.runtime.core.results import Detections
from retina_edge.runtime.video.tracking import TRACKERS, TrackerOptions, make_tracker

#: The trackers from ``trackers`` (a plugin's may be in the table too).
LIBRARY = ("botsort", "bytetrack", "ocsort", "sort")

#: Three objects standing in a scene 800 px wide (x, y of their 40 px boxes' corners).
OBJECTS = np.array([[215.0, 30.0], [240.0, 100.0], [275.0, 170.0]])
#: The view's left edge: still, a turn of 70 px a frame, still again.
PATH = [0.0] * 5 + [70.0, 140.0, 210.0] + [210.0] * 5


def turning_camera():
    """``(detections, frame)`` per frame of a 320x240 view of the scene along :data:`PATH`."""
    import cv2

    from retina_edge.data.moving_video import _scene_background

    scene = _scene_background(np.random.default_rng(0), 240, 800, 320 * 240)
    for number, (x, y) in enumerate(OBJECTS):
        cv2.rectangle(scene, (int(x), int(y)), (int(x) + 39, int(y) + 39), (60 * number, 200, 255 - 60 * number), -1)
    for left in PATH:
        boxes = np.concatenate([OBJECTS - (left, 0), OBJECTS - (left, 0) + 40], axis=1).astype(np.float32)
        detections = Detections(boxes, np.full(3, 0.9, np.float32), np.zeros(3, np.int64))
        yield detections, np.ascontiguousarray(scene[:, int(left):int(left) + 320])


def track(options: TrackerOptions) -> np.ndarray:
    tracker = make_tracker(options)
    return np.array([tracker.update(detections, None, frame) for detections, frame in turning_camera()])


@pytest.mark.parametrize("name", LIBRARY)
def test_ids_follow_the_detections_order(name):
    tracker = make_tracker(TrackerOptions(tracker=name, reid_similarity=None, camera_motion=False, confirm_frames=1))
    boxes = np.array([[10, 10, 50, 50], [100, 10, 140, 50]], np.float32)
    scores, labels = np.array([0.9, 0.8], np.float32), np.zeros(2, np.int64)
    for step in range(4):
        ids = tracker.update(Detections(boxes + step, scores, labels))
    assert len(set(ids)) == 2 and (ids >= 0).all()
    swapped = (boxes + 4)[::-1].copy()
    assert list(tracker.update(Detections(swapped, scores[::-1].copy(), labels))) == [ids[1], ids[0]]
    faint = Detections(boxes + 5, np.array([0.9, 0.3], np.float32), labels)  # under min_score: not tracked
    assert tracker.update(faint)[1] == -1


@pytest.mark.parametrize("name", LIBRARY)
def test_a_fast_turn_keeps_the_ids_with_camera_motion_compensation(name):
    ids = track(TrackerOptions(tracker=name, reid_similarity=None))
    confirmed = ids[4]
    assert (confirmed >= 0).all() and len(set(confirmed)) == 3
    assert (ids[4:] == confirmed).all(), ids


def test_without_compensation_the_turn_loses_the_ids():
    ids = track(TrackerOptions(reid_similarity=None, camera_motion=False))
    assert not set(ids[-1]) & set(ids[4])  # every box 70 px from its prediction: new tracks


def test_colour_checks_judge_reach_in_the_scene():
    """A track lost during a turn comes back as a new tracker ID 200 px away in the image but in
    the same place in the scene: stitched to its old ID given the scene places, not without them."""
    from retina_edge.runtime.video.reid import TrackStitcher

    image = np.zeros((240, 320, 3), np.uint8)
    image[:, :, 0] = 200
    before, after = np.array([[250.0, 100, 290, 140]]), np.array([[50.0, 100, 90, 140]])
    for places, stitched in ((after + (200, 0, 200, 0), True), (None, False)):
        stitcher = TrackStitcher(min_similarity=0.8, seconds=10.0)
        first = stitcher.update(np.array([1]), before, image, 0.0, places=None if places is None else before)
        later = stitcher.update(np.array([2]), after, image, 0.2, places=places)
        assert (later[0] == first[0]) == stitched


@pytest.mark.parametrize(("flags", "tracker", "compensated"), [([], TrackerOptions().tracker, True),
                                                               (["--tracker", "ocsort", "--fixed-camera"], "ocsort", False)])
def test_detect_tracker_flags(flags, tracker, compensated):
    import argparse

    from retina_edge.cli.detect import add_arguments
    from retina_edge.cli.stream import pipeline_config

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    options = pipeline_config(parser.parse_args(["--model", "m.onnx", "--source", "a.mp4", "--track", *flags]), None).tracking
    assert (options.tracker, options.camera_motion, options.reid_similarity) == (tracker, compensated, 0.8)


def test_the_table_holds_the_library_trackers_with_descriptions():
    assert set(LIBRARY) <= set(TRACKERS.names())
    assert all(TRACKERS.get(name).module == "trackers" and TRACKERS.get(name).description for name in LIBRARY)


def test_camera_motion_follows_the_moving_camera():
    """Against the generator's true camera: each frame's shift within a pixel or two, turns included."""
    from retina_edge.data.moving_video import MovingCameraVideo
    from retina_edge.runtime.video.camera_motion import CameraMotion

    video, camera = MovingCameraVideo(seed=3), CameraMotion()
    errors = []
    for index in range(80):
        motion = camera.update(video.frame(index))
        if index:
            errors.append(np.abs(motion[:, 2] - (video.camera(index - 1) - video.camera(index))).max())
    speeds = np.linalg.norm(np.diff([video.camera(i) for i in range(80)], axis=0), axis=1)
    assert speeds.max() > 30 and np.median(errors) < 1 and max(errors) < 3


def test_camera_motion_at_a_size_that_does_not_divide():
    """1280x720 frames shrink 7x to 182x102: the shift comes back in the frame's pixels per axis."""
    from retina_edge.data.moving_video import _scene_background
    from retina_edge.runtime.video.camera_motion import CameraMotion

    scene = _scene_background(np.random.default_rng(1), 800, 1500, 320 * 240)
    camera, corners = CameraMotion(), [(0, 0), (21, 7), (70, 14)]
    for x, y in corners:
        motion = camera.update(np.ascontiguousarray(scene[y:y + 720, x:x + 1280]))
    assert motion[:, 2] == pytest.approx([-49, -7], abs=2)
    assert camera.to_scene(np.array([[0.0, 0, 10, 10]]))[0] == pytest.approx([70, 14, 80, 24], abs=3)


def test_an_unknown_motion_method_is_a_user_error():
    from retina_edge.errors import ConfigError

    with pytest.raises(ConfigError, match="motion_method must be one of sparseOptFlow, orb, sift, ecc"):
        TrackerOptions(motion_method="flow")
