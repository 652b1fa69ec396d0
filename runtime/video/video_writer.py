"""Writing RGB frames to an MP4 file (OpenCV ``mp4v``), no torch."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from retina_edge.errors import DataError


class Mp4Writer:
    """Appends ``(H, W, 3)`` uint8 RGB frames; the file is opened on the first frame (its size is
    the stream's) and finalised by :meth:`close` (also as a context manager)."""

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        self.path, self.fps, self.frames = Path(path), fps, 0
        self._writer = None

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.close()

    def write(self, image_rgb: np.ndarray) -> None:
        import cv2

        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            height, width = image_rgb.shape[:2]
            writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
            if not writer.isOpened():  # OpenCV picks the container by suffix and fails silently without one
                raise DataError(f"cannot write video {self.path}: OpenCV cannot open it for mp4v "
                                "(the name must end in .mp4, its folder must be writable)")
            self._writer = writer
        self._writer.write(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
