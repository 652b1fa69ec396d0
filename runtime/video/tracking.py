"""Track identities across the frames of one source (no torch).

:class:`Tracker` is what the pipeline needs: ``update(detections, timestamp)`` -> one integer ID per
detection, in the detections' order, stable while the object stays in view; ``-1`` for a detection
not (yet) part of a confirmed track. :class:`ByteTracker` implements it with ByteTrack from Roboflow's
``trackers`` package (Apache-2.0; ``pip install 'retina-edge[track]'``), imported only when a tracker
is made. The pipeline keeps one tracker per source, so IDs are per source. Given the frame, a
:class:`retina_edge.runtime.video.reid.TrackStitcher` checks the IDs against each object's colours
(``reid_similarity``; see that module): an object back after its track was lost keeps its old ID,
IDs swapped where two objects crossed are swapped back, and a track moved onto another object gives
its ID back.

Why ``trackers``: it is Apache-2.0 (BoxMOT is AGPL), maintained by Roboflow, and is where
``supervision``'s ByteTrack moved (``supervision`` 0.31 no longer ships one); it tracks by wall-clock
``timestamp`` as well as by frame count, which live sources that drop frames need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from retina_edge.runtime.core.results import Detections


class Tracker(Protocol):
    def update(self, detections: Detections, timestamp: float | None = None, image: np.ndarray | None = None) -> np.ndarray:
        """``(N,)`` int64 track IDs for ``detections`` (x1y1x2y2 pixels), ``-1`` for unconfirmed ones.
        ``timestamp``: capture time in seconds (None: one frame after the previous call); ``image``:
        the ``(H, W, 3)`` uint8 RGB frame, for appearance (None: motion only)."""


@dataclass(frozen=True)
class TrackerOptions:
    """ByteTrack's settings. ``min_score``: detections below it are not tracked (ID -1); the model's
    own threshold is often set low for AP, and low-score duplicates would otherwise be kept alive as
    tracks by ByteTrack's low-score stage. ``lost_frames``: how many frames (at ``frame_rate``) a track that lost its
    object is kept for re-association. ``activation_score``: the lowest score that starts a track;
    ``high_score`` separates the first (high) and second (low-score recovery) association stages
    (``trackers`` starts tracks only from detections left over by the first, so the higher of the
    two is what starts one);
    ``min_iou``: the least overlap of a detection with a track's predicted box to match it;
    ``confirm_frames``: consecutive matches before a track gets its ID. ``reid_similarity``: the
    least colour similarity (0..1) for a new track to take the ID of a lost one seen within
    ``reid_seconds`` (None: no appearance checks, see :mod:`retina_edge.runtime.video.reid`).
    ``tracker``: which motion tracker (:data:`retina_edge.runtime.video.scene_tracking.TRACKERS`);
    ``camera_motion``: compensate the camera's motion (see :mod:`retina_edge.runtime.video.camera_motion`;
    off for a camera that never moves, which saves its cost), estimated by ``motion_method``."""

    tracker: str = "bytetrack"
    camera_motion: bool = True
    motion_method: str = "sparseOptFlow"
    min_score: float = 0.5
    lost_frames: int = 30
    frame_rate: float = 30.0
    activation_score: float = 0.6
    high_score: float = 0.7
    min_iou: float = 0.1
    confirm_frames: int = 1
    reid_similarity: float | None = 0.8
    reid_seconds: float = 10.0


class ByteTracker:
    """:class:`Tracker` over ``trackers.ByteTrackTracker``."""

    def __init__(self, options: TrackerOptions | None = None) -> None:
        from retina_edge.optional import require

        options = options or TrackerOptions()
        self._min_score, self._frame_rate = options.min_score, options.frame_rate
        self._frames, self._stitcher = 0, None
        if options.reid_similarity is not None:
            from retina_edge.runtime.video.reid import TrackStitcher

            self._stitcher = TrackStitcher(min_similarity=options.reid_similarity, seconds=options.reid_seconds)
        self._sv = require("supervision", "tracking")
        trackers = require("trackers", "tracking")
        self._tracker = trackers.ByteTrackTracker(
            lost_track_buffer=options.lost_frames, frame_rate=options.frame_rate,
            track_activation_threshold=options.activation_score, minimum_consecutive_frames=options.confirm_frames,
            minimum_iou_threshold=options.min_iou, high_conf_det_threshold=options.high_score)

    def update(self, detections: Detections, timestamp: float | None = None, image: np.ndarray | None = None) -> np.ndarray:
        count = len(detections)
        self._frames += 1
        kept = np.flatnonzero(np.asarray(detections.scores) >= self._min_score)
        # The library may reorder its output; each detection carries its position to map IDs back.
        found = self._sv.Detections(xyxy=np.asarray(detections.boxes, dtype=np.float32).reshape(-1, 4)[kept],
                                    confidence=np.asarray(detections.scores, dtype=np.float32)[kept],
                                    class_id=np.asarray(detections.labels, dtype=int)[kept],
                                    data={"position": kept})
        tracked = self._tracker.update(found, timestamp=timestamp)
        ids = np.full(count, -1, dtype=np.int64)
        if len(tracked):
            ids[np.asarray(tracked.data["position"], dtype=int)] = np.asarray(tracked.tracker_id, dtype=np.int64)
        if self._stitcher is None or image is None:
            return ids
        time = timestamp if timestamp is not None else self._frames / self._frame_rate
        return self._stitcher.update(ids, np.asarray(detections.boxes), image, time)


def make_tracker(options: TrackerOptions | None = None) -> Tracker:
    """The default tracker (ByteTrack from ``trackers``, with re-identification unless ``reid_similarity`` is None)."""
    return ByteTracker(options)
