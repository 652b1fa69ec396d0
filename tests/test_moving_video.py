"""The moving-camera synthetic video: its path does what the module promises (sweeps, turns,
returns, objects leaving and coming back), its ground truth matches what is drawn, and it writes
MOTChallenge ground truth that ``trackers``' and ``motmetrics``' readers take."""

from __future__ import annotations

import re

import numpy as np
import pytest

from retina_edge.data.moving_video import MovingCameraVideo, motion_blur

FRAMES = 300


@pytest.fixture(scope="module")
def video() -> MovingCameraVideo:
    return MovingCameraVideo(seed=5)


def test_frames_are_deterministic_and_made_on_their_own(video):
    again = MovingCameraVideo(seed=5)
    assert np.array_equal(again.frame(40), video.frame(40))  # frame 40 first, without the ones before
    assert not np.array_equal(MovingCameraVideo(seed=6).frame(40), video.frame(40))


def test_the_camera_sweeps_holds_turns_and_returns(video):
    path = np.array([video.camera(i) for i in range(FRAMES)])
    speed = np.linalg.norm(np.diff(path, axis=0), axis=1)
    assert (speed > 30).any(), "no turn"  # a robot turning: tens of pixels a frame
    assert ((speed > 1) & (speed < 7)).sum() > 30, "no slow sweep"
    assert (speed < 1).sum() > 10, "no hold"
    high = np.array(video.scene_size) - (video.width, video.height)
    assert (path >= -1).all() and (path <= high + 1).all()  # the view stays in the scene (holds tremble)
    # objects leave the view and come back: in view, out for at least 10 frames, in view again
    seen = ["".join("1" if any(n == number for n, _, _ in video.boxes(i)) else "0" for i in range(FRAMES))
            for number in range(1, len(video.objects) + 1)]
    assert any(re.search("10{10,}1", flags) for flags in seen)


def test_ground_truth_is_the_drawn_objects_clipped_to_the_view(video):
    for index in (0, 37, 120):
        _, ids, numbers = video._render(index)
        boxes, seen = video.boxes(index), video.visibility(index)
        assert [number for number, _, _ in boxes] == numbers and len(seen) == len(boxes)
        for (number, _, (x, y, w, h)), visible in zip(boxes, seen):
            assert 0 <= x and 0 <= y and x + w <= video.width + 1e-9 and y + h <= video.height + 1e-9
            ys, xs = np.nonzero(ids == number)
            if len(xs):  # the pixels it shows lie in its box (a pixel of slack for anti-aliasing)
                assert xs.min() >= x - 1 and xs.max() <= x + w + 1 and ys.min() >= y - 1 and ys.max() <= y + h + 1
            assert 0 <= visible <= 1 and (visible > 0) == (len(xs) > 0)


def test_visibility_counts_the_part_outside_the_view():
    """An object alone, half out of the view, is about half visible."""
    video = MovingCameraVideo(seed=1, objects=1, moving=0.0)
    obj = video.objects[0]
    w, h = obj["size"]
    obj["label"] = 1  # a rectangle: its area splits as its box does
    obj["area"] = w * h
    x, y = obj["position"]
    video._path = np.array([[x + w / 2 - 0.0, y]])  # the view's left edge through the object's middle
    ((_, _, box),) = video.boxes(0)
    assert box[0] == 0 and box[2] == pytest.approx(w / 2)
    assert video.visibility(0)[0] == pytest.approx(0.5, abs=0.05)


def test_turns_are_blurred_along_the_motion():
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, 20] = 255
    assert motion_blur(image, np.array([1.0, 0.0])) is image  # under 1.5 px: sharp
    smeared = motion_blur(image, np.array([8.0, 0.0]))
    assert smeared[20, 20, 0] < 100 and smeared[20, 16, 0] > 0 and smeared[20, 10, 0] == 0
    assert (motion_blur(image, np.array([0.0, 8.0])) == image).all()  # a vertical line smeared vertically


def test_mot_ground_truth_reads_back_in_trackers_and_motmetrics(video, tmp_path):
    import motmetrics as mm
    from trackers import load_mot_file

    from retina_edge.data.synth_video import write_mot_ground_truth

    path = write_mot_ground_truth(tmp_path / "gt.txt", video, 30)
    rows = sum(len(video.boxes(i)) for i in range(30))
    assert sum(len(frame.ids) for frame in load_mot_file(path).values()) == rows
    truth = mm.io.loadtxt(str(path), fmt="mot15-2D")
    assert len(truth) == rows and truth["Visibility"].between(0, 1).all()
