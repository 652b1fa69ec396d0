"""Synthetic video: shapes of the synthetic classes moving over a textured background (no torch).

Deterministic by seed; ``frame(i)`` can be regenerated on its own, so tests can compare a
pipeline's per-frame output with per-image runs.
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

    def frame(self, index: int) -> np.ndarray:
        image = self.background.copy()
        ids = np.zeros(image.shape[:2], dtype=np.int32)
        for number, obj in enumerate(self.objects, start=1):
            w, h = obj["size"]
            span = np.array([self.width - w, self.height - h])
            travelled = obj["position"] + obj["velocity"] * index
            position = span - np.abs(np.mod(travelled, 2 * span) - span)  # bounce off the borders
            _draw(image, ids, CLASSES[obj["label"]], (position[0], position[1], w, h), obj["colour"], number)
        return image


def write_video(path: str | Path, video: SyntheticVideo, frames: int, fps: float = 15.0) -> Path:
    """Encode ``frames`` frames as MP4 (OpenCV ``mp4v``)."""
    from retina_edge.runtime.video_writer import Mp4Writer

    with Mp4Writer(path, fps) as writer:
        for index in range(frames):
            writer.write(video.frame(index))
    return writer.path
