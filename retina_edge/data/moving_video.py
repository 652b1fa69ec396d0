"""Synthetic video from a moving camera: a view sliding over a larger scene, with ground truth (no torch).

A robot's camera does not stay put: it sweeps slowly to look somewhere else, holds, comes back to
where it looked before (the objects there leave the view and return), and jerks when the robot
turns or drives over a bump. :class:`MovingCameraVideo` films a scene ``scene_size`` large (a
textured background with clutter, shapes of the synthetic classes, some standing still and some
moving) through a ``size`` view whose top-left corner follows a path drawn from the seed:

- **sweep**: to a new place at :data:`SWEEP_SPEED` pixels per frame;
- **hold**: a few frames still, with a tremble of a few tenths of a pixel;
- **return**: a sweep back to a place held or swept to before;
- **turn**: a fast jerk sideways (:data:`TURN_SPAN` pixels in :data:`TURN_FRAMES` frames, up to about
  60 pixels a frame, with a vertical bump), the frames blurred along the motion as a camera's
  exposure blurs them.

Same interface as :class:`~retina_edge.data.synth_video.SyntheticVideo`: ``frame(i)``,
``boxes(i)`` (the objects with any part in view, their boxes clipped to the view) and
``visibility(i)`` (the fraction of each object's shape seen: not covered by an object drawn later
and not outside the view), so :func:`~retina_edge.data.synth_video.write_mot_ground_truth` writes
its MOTChallenge ground truth and ``write_video`` its MP4. ``camera(i)`` is the view's true
position, for checking a camera-motion estimate. Deterministic by seed; any frame can be made on
its own.
"""

from __future__ import annotations

import numpy as np

from retina_edge.data.synth import CLASSES, _background, _clutter, _draw, _object_colour

#: A sweep's speed range, pixels per frame.
SWEEP_SPEED = (2.0, 6.0)
#: A turn's horizontal span range (pixels) and its length range (frames).
TURN_SPAN = (100.0, 260.0)
TURN_FRAMES = (3, 6)
#: A hold's length range (frames).
HOLD_FRAMES = (5, 25)
#: How often each kind of segment comes: sweep, hold, return, turn.
SEGMENT_ODDS = {"sweep": 0.3, "hold": 0.2, "return": 0.3, "turn": 0.2}
#: Motion blur: the fraction of a frame's camera motion the exposure smears (0: sharp frames).
EXPOSURE = 0.25


class MovingCameraVideo:
    """``frame(i)`` -> ``(H, W, 3)`` uint8 RGB of a ``size`` (W, H) view over a ``scene_size`` scene
    (see the module docstring); ``objects`` shapes, ``moving`` of them (a fraction) moving."""

    def __init__(self, *, size: tuple[int, int] = (320, 240), scene_size: tuple[int, int] = (960, 360),
                 objects: int = 12, moving: float = 0.5, seed: int = 0) -> None:
        (self.width, self.height), (scene_width, scene_height) = size, scene_size
        if scene_width < self.width or scene_height < self.height:
            raise ValueError(f"the scene {scene_size} must be at least the view {size}")
        rng = np.random.default_rng([seed, 11])
        self.background = _scene_background(rng, scene_height, scene_width, self.width * self.height)
        self.scene_size = (scene_width, scene_height)
        self.objects = [_scene_object(rng, scene_width, scene_height, moves=rng.random() < moving)
                        for _ in range(objects)]
        self._path_rng = np.random.default_rng([seed, 12])
        self._path = np.array([[rng.uniform(0, scene_width - self.width), rng.uniform(0, scene_height - self.height)]])
        self._visited = [self._path[0]]

    def camera(self, index: int) -> np.ndarray:
        """The view's top-left corner in the scene at frame ``index`` (pixels, float)."""
        while len(self._path) <= index:
            self._path = np.concatenate([self._path, self._segment(self._path[-1])])
        return self._path[index].copy()

    def _segment(self, start: np.ndarray) -> np.ndarray:
        """The next segment's positions (after ``start``), drawn from the path's own generator."""
        rng = self._path_rng
        kind = rng.choice(list(SEGMENT_ODDS), p=list(SEGMENT_ODDS.values()))
        high = np.array(self.scene_size, dtype=np.float64) - (self.width, self.height)
        if kind == "hold":
            steps = int(rng.integers(HOLD_FRAMES[0], HOLD_FRAMES[1] + 1))
            return start + rng.normal(0, 0.3, (steps, 2))
        if kind == "turn":
            span = rng.uniform(*TURN_SPAN) * rng.choice([-1, 1])
            end = np.clip(start + (span, rng.uniform(-15, 15)), 0, high)
            steps = int(rng.integers(TURN_FRAMES[0], TURN_FRAMES[1] + 1))
            ease = (1 - np.cos(np.pi * np.arange(1, steps + 1) / steps)) / 2  # speeds up, then slows down
            return start + ease[:, None] * (end - start)
        target = (self._visited[int(rng.integers(len(self._visited)))] if kind == "return"
                  else rng.uniform(0, 1, 2) * high)
        steps = max(1, int(np.ceil(np.linalg.norm(target - start) / rng.uniform(*SWEEP_SPEED))))
        self._visited.append(target)
        return start + (np.arange(1, steps + 1) / steps)[:, None] * (target - start)

    def _scene_boxes(self, index: int) -> list[tuple[float, float, float, float]]:
        """Every object's box ``(x, y, w, h)`` in scene pixels at frame ``index`` (moving ones bounce
        off the scene's borders)."""
        found = []
        for obj in self.objects:
            w, h = obj["size"]
            span = np.array(self.scene_size, dtype=np.float64) - (w, h)
            travelled = obj["position"] + obj["velocity"] * index
            x, y = span - np.abs(np.mod(travelled, 2 * span) - span)
            found.append((float(x), float(y), w, h))
        return found

    def boxes(self, index: int) -> list[tuple[int, int, tuple[float, float, float, float]]]:
        """Frame ``index``'s objects in view as ``(identity, label, (x, y, w, h))``: identity from 1,
        the box in view pixels, clipped to the view (the part a detector can see)."""
        return [(number, label, clipped) for number, label, _, clipped in self._in_view(index)]

    def _in_view(self, index: int) -> list[tuple[int, int, tuple, tuple]]:
        """``(identity, label, box in view pixels, box clipped to the view)`` of the objects in view."""
        ox, oy = self.camera(index)
        found = []
        for number, (obj, (x, y, w, h)) in enumerate(zip(self.objects, self._scene_boxes(index)), start=1):
            box = (x - ox, y - oy, w, h)
            x1, y1 = max(box[0], 0.0), max(box[1], 0.0)
            x2, y2 = min(box[0] + w, float(self.width)), min(box[1] + h, float(self.height))
            if x2 - x1 >= 1 and y2 - y1 >= 1:
                found.append((number, obj["label"], box, (x1, y1, x2 - x1, y2 - y1)))
        return found

    def frame(self, index: int) -> np.ndarray:
        return self._render(index)[0]

    def visibility(self, index: int) -> list[float]:
        """Per object in view (in :meth:`boxes` order), the fraction of its shape seen: neither
        covered by objects drawn later nor outside the view."""
        _, ids, numbers = self._render(index)
        return [min(1.0, float(np.count_nonzero(ids == number)) / self.objects[number - 1]["area"]) for number in numbers]

    def _render(self, index: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
        import cv2

        ox, oy = self.camera(index)
        shift = np.array([[1.0, 0.0, -ox], [0.0, 1.0, -oy]])
        image = cv2.warpAffine(self.background, shift, (self.width, self.height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        ids = np.zeros(image.shape[:2], dtype=np.int32)
        numbers = []
        for number, label, box, _ in self._in_view(index):
            _draw(image, ids, CLASSES[label], box, self.objects[number - 1]["colour"], number)
            numbers.append(number)
        motion = self.camera(index) - self.camera(index - 1) if index > 0 else np.zeros(2)
        return motion_blur(image, motion * EXPOSURE), ids, numbers


def motion_blur(image: np.ndarray, smear: np.ndarray) -> np.ndarray:
    """``image`` smeared along ``smear`` (pixels, x and y) as by a camera moving while exposed;
    unchanged under 1.5 pixels."""
    import cv2

    length = float(np.hypot(*smear))
    if length < 1.5:
        return image
    side = 2 * int(np.ceil(length / 2)) + 1
    kernel = np.zeros((side, side), dtype=np.float32)
    centre, half = np.array([side // 2, side // 2], dtype=np.float64), np.asarray(smear, dtype=np.float64) / 2
    cv2.line(kernel, tuple(np.round(centre - half).astype(int)), tuple(np.round(centre + half).astype(int)), 1.0, 1,
             cv2.LINE_AA)
    return cv2.filter2D(image, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


def _scene_background(rng: np.random.Generator, height: int, width: int, view_area: int) -> np.ndarray:
    """The synthetic images' textured background over the whole scene, with their clutter (lines,
    blobs) at their density per view: the fixed features a camera-motion estimate follows."""
    image = _background(rng, height, width)
    for _ in range(max(1, round(height * width / view_area))):
        _clutter(rng, image)
    return image


def _scene_object(rng: np.random.Generator, scene_width: int, scene_height: int, *, moves: bool) -> dict:
    """One shape: label, size, start, velocity (0 for a standing one), colour, and its full area in pixels."""
    label = int(rng.integers(len(CLASSES)))
    side = float(rng.uniform(28, 90))
    size = (side, side * float(rng.uniform(0.6, 1.4)))
    canvas = np.zeros((int(np.ceil(size[1])) + 2, int(np.ceil(size[0])) + 2, 3), dtype=np.uint8)
    area = _draw(canvas, np.zeros(canvas.shape[:2], np.int32), CLASSES[label], (1.0, 1.0, *size), (255, 255, 255), 1)
    return {"label": label, "size": size, "area": max(area, 1),
            "position": rng.uniform([0, 0], [scene_width - size[0], scene_height - size[1]]),
            "velocity": rng.uniform(-2.5, 2.5, 2) if moves else np.zeros(2), "colour": _object_colour(rng, label)}
