"""One source's tracker chain: camera-motion compensation, a motion tracker, colour checks (no torch).

:class:`SceneTracker` wraps the motion tracker :func:`~retina_edge.runtime.video.tracking.make_tracker`
built from the table: per frame, :class:`~retina_edge.runtime.video.camera_motion.CameraMotion`
maps the detections into the scene's coordinates (``camera_motion`` on and the frame given), the
motion tracker gives IDs to the mapped boxes (it is given the frame only when its boxes are the
frame's, with compensation off: a tracker that looks into the frame must see boxes where they are
in it), and
:class:`~retina_edge.runtime.video.reid.TrackStitcher` (``reid_similarity`` set) checks the IDs
against each object's colours in the frame, judging an unseen object's reach in the scene.
"""

from __future__ import annotations

import numpy as np

from retina_edge.runtime.core.results import Detections
from retina_edge.runtime.video.tracking import Tracker, TrackerOptions


class SceneTracker:
    """``tracker`` (any :class:`~retina_edge.runtime.video.tracking.Tracker`) with camera-motion
    compensation and colour checks as ``options`` say; one per source."""

    def __init__(self, tracker: Tracker, options: TrackerOptions) -> None:
        self.motion, self.camera, self.stitcher = tracker, None, None
        if options.camera_motion:
            from retina_edge.runtime.video.camera_motion import CameraMotion

            self.camera = CameraMotion(method=options.motion_method)
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
        ids = self.motion.update(detections, timestamp, image if self.camera is None else None)
        if self.stitcher is None or image is None:
            return ids
        time = timestamp if timestamp is not None else self._frames / self._frame_rate
        return self.stitcher.update(ids, boxes, image, time, places=places)
