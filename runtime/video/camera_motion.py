"""Camera-motion compensation for any tracker: boxes in the scene's coordinates (no torch).

A tracker predicting each box with constant velocity in image pixels is broken by a camera that
turns: every box jumps at once. :class:`CameraMotion` follows the camera instead: per frame, the
global motion from the previous frame (a 2x3 similarity: rotation, scale, shift) is estimated by
``trackers``' :class:`trackers.CMC` (BoT-SORT's camera-motion compensation: sparse optical flow by
default, or ORB, SIFT or ECC) and chained onto the ones before, so :meth:`CameraMotion.to_scene`
maps a frame's boxes into the first frame's coordinates (the scene). A tracker fed scene
coordinates predicts each object's own motion, and the colour checks judge an unseen object's
reach in the scene, where it still is after the camera looked away and back.

BoT-SORT warps its Kalman states by the same per-frame motion; for an affine motion the two are
the same (warping a state after the prediction equals predicting from the warped state), and
doing it outside the tracker gives it to every tracker and to the colour checks, at one
estimate per frame. A frame whose motion cannot be estimated (too few features) counts as still.
"""

from __future__ import annotations

import numpy as np

#: ``trackers``' camera-motion methods (its ``CMCConfig.method``).
METHODS = ("sparseOptFlow", "orb", "sift", "ecc")


class CameraMotion:
    """The camera's motion since the first frame (see the module docstring); one per source.
    ``width``: frames are shrunk to about this width (pixels) before estimation, so its cost and its
    accuracy relative to the frame are alike at every resolution."""

    def __init__(self, *, method: str = "sparseOptFlow", width: int = 192) -> None:
        from retina_edge.optional import require

        trackers = require("trackers", "tracking")
        self.width = width
        self._cmc = trackers.CMC(trackers.CMCConfig(method=method, downscale=1))
        self._scene_to_frame = np.eye(3)
        self._frame_to_scene = np.eye(3)
        self._size: tuple[int, ...] | None = None

    def update(self, image: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
        """Take the next frame (``(H, W, 3)`` uint8 RGB) and its detections (x1y1x2y2, kept out of
        the estimate by the feature-based methods); returns the 2x3 motion from the previous frame.
        A frame of another size starts the scene anew (the motion between them is unknowable)."""
        import cv2

        if self._size is not None and image.shape != self._size:
            self._cmc.reset()
            self._scene_to_frame, self._frame_to_scene = np.eye(3), np.eye(3)
        self._size = image.shape
        small = _shrink(image, max(1, round(image.shape[1] / self.width)))
        factors = np.array([image.shape[1] / small.shape[1], image.shape[0] / small.shape[0]])
        masked = None if boxes is None else np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / np.tile(factors, 2)
        motion = np.asarray(self._cmc.estimate(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), masked), dtype=np.float64)
        motion[:, 2] *= factors  # the shift back in the frame's pixels (rotation and scale are unchanged)
        self._scene_to_frame = np.vstack([motion, (0.0, 0.0, 1.0)]) @ self._scene_to_frame
        self._frame_to_scene = np.linalg.inv(self._scene_to_frame)
        return motion

    def to_scene(self, boxes: np.ndarray) -> np.ndarray:
        """``(N, 4)`` x1y1x2y2 boxes of the latest frame in scene coordinates (the box around the
        four corners mapped)."""
        return map_boxes(self._frame_to_scene, boxes)


def _shrink(image: np.ndarray, scale: int) -> np.ndarray:
    """``image`` ``scale`` times smaller, averaged over each output pixel's area. Past 2x a linear
    step to twice the size comes first: area averaging over a whole 1920x1080 frame costs about
    5 ms, the two steps about 1.4 ms, for about 0.2 px more error in the motion at the frame's scale."""
    import cv2

    size = (image.shape[1] // scale, image.shape[0] // scale)
    if scale > 2:
        image = cv2.resize(image, (2 * size[0], 2 * size[1]), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def map_boxes(transform: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` x1y1x2y2 boxes through the 3x3 affine ``transform``: the box around their mapped corners."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    corners = boxes[:, [[0, 1], [2, 1], [2, 3], [0, 3]]]  # (N, 4 corners, xy)
    mapped = corners @ transform[:2, :2].T + transform[:2, 2]
    return np.concatenate([mapped.min(axis=1), mapped.max(axis=1)], axis=1)
