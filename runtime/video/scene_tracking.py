"""One source's tracker: camera-motion compensation, a motion tracker, colour checks (no torch).

:class:`SceneTracker` chains the three per frame: :class:`~retina_edge.runtime.video.camera_motion.CameraMotion`
maps the detections into the scene's coordinates (when ``camera_motion`` is on and the frame is
given), the motion tracker named by ``TrackerOptions.tracker`` (:data:`TRACKERS`) gives IDs to the
mapped boxes, and :class:`~retina_edge.runtime.video.reid.TrackStitcher` checks the IDs against each
object's colours in the frame, judging an unseen object's reach in the scene.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from retina_edge.runtime.video import library_trackers
from retina_edge.runtime.core.results import Detections
from retina_edge.runtime.video.tracking import TrackerOptions

#: The motion trackers by name (see :mod:`retina_edge.runtime.video.library_trackers`).
TRACKERS: dict[str, Callable] = {"bytetrack": library_trackers.bytetrack, "botsort": library_trackers.botsort,
                                 "ocsort": library_trackers.ocsort, "sort": library_trackers.sort}
#: One line on each, for help texts.
DESCRIPTIONS = {"bytetrack": "ByteTrack, high- then low-score association",
                "botsort": "BoT-SORT's association (IoU fused with the score)",
                "ocsort": "OC-SORT, observation-centric recovery after occlusion",
                "sort": "SORT, one IoU association"}


class SceneTracker:
    """A :class:`~retina_edge.runtime.video.tracking.Tracker` (see the module docstring); one per source."""

    def __init__(self, options: TrackerOptions | None = None) -> None:
        from retina_edge.errors import RetinaEdgeError

        options = options or TrackerOptions()
        if options.tracker not in TRACKERS:
            raise RetinaEdgeError(f"unknown tracker {options.tracker!r}; expected one of {sorted(TRACKERS)}")
        self.motion = TRACKERS[options.tracker](options)
        self.camera = None
        if options.camera_motion:
            from retina_edge.runtime.video.camera_motion import CameraMotion

            self.camera = CameraMotion(method=options.motion_method)
        self.stitcher = None
        if options.reid_similarity is not None:
            from retina_edge.runtime.video.reid import TrackStitcher

            self.stitcher = TrackStitcher(min_similarity=options.reid_similarity, seconds=options.reid_seconds)
        self._frame_rate, self._frames = options.frame_rate, 0

    def update(self, detections: Detections, timestamp: float | None = None, image: np.ndarray | None = None) -> np.ndarray:
        self._frames += 1
        boxes = np.asarray(detections.boxes, dtype=np.float32).reshape(-1, 4)
        places = boxes
        if self.camera is not None:
            if image is not None:
                self.camera.update(image, boxes)
            places = self.camera.to_scene(boxes).astype(np.float32)
            detections = Detections(places, detections.scores, detections.labels, detections.class_names,
                                    detections.category_ids)
        ids = self.motion.update(detections, timestamp)
        if self.stitcher is None or image is None:
            return ids
        time = timestamp if timestamp is not None else self._frames / self._frame_rate
        return self.stitcher.update(ids, boxes, image, time, places=places)
