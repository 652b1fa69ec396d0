"""Synthetic video: shapes of the synthetic classes moving over a textured background (no torch).

Deterministic by seed; ``frame(i)`` can be regenerated on its own, so tests can compare a
pipeline's per-frame output with per-image runs. ``boxes(i)`` is frame i's ground truth (each
object's identity, class and box), and :func:`write_mot_ground_truth` writes it in MOTChallenge
text, so tracking can be scored (``motmetrics``, TrackEval).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from retina_edge.data.synth import CLASSES, _background, _draw, _object_colour


class SyntheticVideo:
    """``frame(i)`` -> ``(H, W, 3)`` uint8 RGB; objects bounce around at constant speed."""

    def __init__(self, *, width: int = 320, height: int = 240, objects: int = 4, seed: int = 0) -> None:
        rng = np.random.default_rng([seed, 7])
        self.width, self.height = width, height
        self.background = _background(rng, height, width)
        self.objects = []
        for _ in range(objects):
            label = int(rng.integers(len(CLASSES)))
            size = float(rng.uniform(28, 90))
            self.objects.append({
                "label": label, "size": (size, size * float(rng.uniform(0.6, 1.4))),
                "position": rng.uniform([0, 0], [width - size, height - size]), "velocity": rng.uniform(-4, 4, 2),
                "colour": _object_colour(rng, label),
            })

    def boxes(self, index: int) -> list[tuple[int, int, tuple[float, float, float, float]]]:
        """Frame ``index``'s objects as ``(identity, label, (x, y, w, h))``: identity from 1, the
        box's top-left corner and size in pixels (objects drawn later cover earlier ones)."""
        found = []
        for number, obj in enumerate(self.objects, start=1):
            w, h = obj["size"]
            span = np.array([self.width - w, self.height - h])
            travelled = obj["position"] + obj["velocity"] * index
            position = span - np.abs(np.mod(travelled, 2 * span) - span)  # bounce off the borders
            found.append((number, obj["label"], (float(position[0]), float(position[1]), float(w), float(h))))
        return found

    def frame(self, index: int) -> np.ndarray:
        return self._render(index)[0]

    def visibility(self, index: int) -> list[float]:
        """Per object (in :meth:`boxes` order), the fraction of its shape not covered by later ones."""
        _, ids, areas = self._render(index)
        return [float(np.count_nonzero(ids == number)) / max(area, 1) for number, area in enumerate(areas, start=1)]

    def _render(self, index: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
        image = self.background.copy()
        ids = np.zeros(image.shape[:2], dtype=np.int32)
        areas = [_draw(image, ids, CLASSES[label], box, obj["colour"], number)
                 for (number, label, box), obj in zip(self.boxes(index), self.objects)]
        return image, ids, areas


def write_video(path: str | Path, video: SyntheticVideo, frames: int, fps: float = 15.0) -> Path:
    """Encode ``frames`` frames as MP4 (OpenCV ``mp4v``)."""
    from retina_edge.runtime.video.video_writer import Mp4Writer

    with Mp4Writer(path, fps) as writer:
        for index in range(frames):
            writer.write(video.frame(index))
    return writer.path


def write_mot_ground_truth(path: str | Path, video: SyntheticVideo, frames: int) -> Path:
    """MOTChallenge ground truth of ``frames`` frames: one line per object per frame,
    ``frame,id,left,top,w,h,1,class,visibility`` (frame, id and pixel coordinates from 1 as MOTChallenge
    counts them, so ``left = x + 1``; class: the contiguous label + 1; visibility: the unoccluded
    fraction of the shape, 0 to 1), atomically."""
    from retina_edge.atomic import write_text_atomic

    lines = [f"{index + 1},{number},{x + 1:.2f},{y + 1:.2f},{w:.2f},{h:.2f},1,{label + 1},{seen:.3f}"
             for index in range(frames)
             for (number, label, (x, y, w, h)), seen in zip(video.boxes(index), video.visibility(index))]
    write_text_atomic(path, "\n".join(lines) + "\n")
    return Path(path)
