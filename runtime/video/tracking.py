"""Track identities across the frames of one source (no torch).

:class:`Tracker` is what the pipeline needs: ``update(detections, timestamp)`` -> one integer ID per
detection, in the detections' order, stable while the object stays in view; ``-1`` for a detection
not (yet) part of a confirmed track. :func:`make_tracker` makes one from a motion tracker of Roboflow's
``trackers`` package (Apache-2.0; ``pip install 'retina-edge[track]'``; ByteTrack, BoT-SORT, OC-SORT,
SORT: :mod:`retina_edge.runtime.video.library_trackers`), imported only when a tracker is made, fed
boxes in the scene's coordinates when the camera moves (:mod:`retina_edge.runtime.video.camera_motion`).
The pipeline keeps one tracker per source, so IDs are per source. Given the frame, a
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
    """A tracker's settings. ``min_score``: detections below it are not tracked (ID -1); the model's
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


def make_tracker(options: TrackerOptions | None = None) -> Tracker:
    """One source's tracker: camera-motion compensation, the motion tracker ``options.tracker`` and
    the colour checks (see :class:`retina_edge.runtime.video.scene_tracking.SceneTracker`)."""
    from retina_edge.runtime.video.scene_tracking import SceneTracker

    return SceneTracker(options)
