"""Motion trackers from Roboflow's ``trackers`` (Apache-2.0), one adapter for all (no torch).

:class:`LibraryTracker` turns one of the library's trackers into the runtime's motion tracker:
``update(detections, timestamp, image)`` -> one ID per detection in the detections' order, ``-1``
below ``min_score`` or while a track is unconfirmed. The factories below build each family from
:class:`~retina_edge.runtime.video.tracking.TrackerOptions`:

- ``bytetrack``: ByteTrack (two association stages, high then low scores; IoU with the Kalman
  prediction);
- ``botsort``: BoT-SORT's association (ByteTrack's stages with IoU fused with the detection's score
  and a stage of its own for unconfirmed tracks); its camera-motion compensation is the runtime's
  (:mod:`retina_edge.runtime.video.camera_motion`, the same ``trackers.CMC``), applied before the tracker
  as for every tracker, so its own is off; its appearance ReID needs a second network and is not
  used (the colour checks stand in);
- ``ocsort``: OC-SORT (observation-centric re-update after occlusion, direction consistency, and
  recovery from a track's last observation);
- ``sort``: SORT (one IoU association; the plainest baseline).

``McByteTracker`` is left out: what sets it apart is mask propagation by SAM/Cutie (torch, a GPU),
which the torch-free runtime cannot carry; without masks it is ByteTrack with camera-motion
compensation, which ``bytetrack`` here is. The frame is never given to the library's trackers:
the runtime compensates camera motion itself, and ByteTrack, OC-SORT and SORT warn when given one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from retina_edge.runtime.core.results import Detections

if TYPE_CHECKING:
    from retina_edge.runtime.video.tracking import TrackerOptions


class LibraryTracker:
    """A ``trackers`` tracker (``update(sv.Detections, timestamp=...)``) as a runtime motion tracker."""

    def __init__(self, tracker, *, min_score: float) -> None:  # noqa: ANN001
        from retina_edge.optional import require

        self._sv = require("supervision", "tracking")
        self.tracker, self.min_score = tracker, min_score

    def update(self, detections: Detections, timestamp: float | None = None, image: np.ndarray | None = None) -> np.ndarray:
        found = self.found(detections)
        return self.ids(self.tracker.update(found, timestamp=timestamp), len(detections))

    def found(self, detections: Detections):  # noqa: ANN201
        """The detections scoring at least ``min_score`` as ``supervision`` detections; each carries
        its position, since the library may reorder its output."""
        kept = np.flatnonzero(np.asarray(detections.scores) >= self.min_score)
        return self._sv.Detections(xyxy=np.asarray(detections.boxes, dtype=np.float32).reshape(-1, 4)[kept],
                                   confidence=np.asarray(detections.scores, dtype=np.float32)[kept],
                                   class_id=np.asarray(detections.labels, dtype=int)[kept], data={"position": kept})

    @staticmethod
    def ids(tracked, count: int) -> np.ndarray:  # noqa: ANN001
        """The library's tracked output as one ID per detection, in the detections' order."""
        ids = np.full(count, -1, dtype=np.int64)
        if len(tracked):
            ids[np.asarray(tracked.data["position"], dtype=int)] = np.asarray(tracked.tracker_id, dtype=np.int64)
        return ids


def _trackers():  # noqa: ANN202
    from retina_edge.optional import require

    return require("trackers", "tracking")


def bytetrack(options: TrackerOptions) -> LibraryTracker:
    tracker = _trackers().ByteTrackTracker(
        lost_track_buffer=options.lost_frames, frame_rate=options.frame_rate,
        track_activation_threshold=options.activation_score, minimum_consecutive_frames=options.confirm_frames,
        minimum_iou_threshold=options.min_iou, high_conf_det_threshold=options.high_score)
    return LibraryTracker(tracker, min_score=options.min_score)


def botsort(options: TrackerOptions) -> LibraryTracker:
    """``min_iou`` bounds its first stage's IoU x score (BoT-SORT fuses the two)."""
    tracker = _trackers().BoTSORTTracker(
        lost_track_buffer=options.lost_frames, frame_rate=options.frame_rate,
        track_activation_threshold=options.activation_score, minimum_consecutive_frames=options.confirm_frames,
        minimum_iou_threshold_first_assoc=options.min_iou, high_conf_det_threshold=options.high_score,
        enable_cmc=False)
    return LibraryTracker(tracker, min_score=options.min_score)


def ocsort(options: TrackerOptions) -> LibraryTracker:
    """OC-SORT has no low-score stage: detections under the higher of ``activation_score`` and
    ``high_score`` are not tracked."""
    tracker = _trackers().OCSORTTracker(
        lost_track_buffer=options.lost_frames, frame_rate=options.frame_rate,
        minimum_consecutive_frames=options.confirm_frames, minimum_iou_threshold=options.min_iou,
        high_conf_det_threshold=max(options.activation_score, options.high_score))
    return LibraryTracker(tracker, min_score=options.min_score)


def sort(options: TrackerOptions) -> LibraryTracker:
    tracker = _trackers().SORTTracker(
        lost_track_buffer=options.lost_frames, frame_rate=options.frame_rate,
        track_activation_threshold=options.activation_score, minimum_consecutive_frames=options.confirm_frames,
        minimum_iou_threshold=options.min_iou)
    return LibraryTracker(tracker, min_score=options.min_score)
