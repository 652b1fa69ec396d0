"""Writing RGB frames to an MP4 file (OpenCV ``mp4v``), no torch.

An MP4 stream has one frame size, and OpenCV drops every frame of another size without a word (a
folder of images of several sizes kept 1 frame of 100): a frame whose size differs from the first
one's is letterboxed into it (scaled to fit, centred on black) and counted. The video is written
beside its name under a temporary one (``.NAME.*.tmp.mp4`` for ``NAME.mp4``) and put in place by :meth:`close` once
the finished file, read back, holds every frame written: a process killed outright leaves an earlier
video of that name as it was, and a disk that fills up ends with an error naming the video instead
of an unplayable file.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from retina_edge.atomic import StagedFile
from retina_edge.errors import DataError

#: Free space below which writing stops with "No space left on device" (plus 16 bytes per frame
#: written, for the index the MP4 gets when it is finished): FFmpeg itself only warns, per frame,
#: and leaves a file without its index.
MIN_FREE_BYTES = 8 * 2**20


class Mp4Writer:
    """Appends ``(H, W, 3)`` uint8 RGB frames; the file is opened on the first frame (its size is
    the stream's, :attr:`size` as (width, height)) and finalised by :meth:`close` (also as a context
    manager). ``fps``: frames per second, or a function giving it when the first frame comes (a
    camera's rate is known once it is open). :attr:`frames` counts the frames written,
    :attr:`letterboxed` those of another size."""

    def __init__(self, path: str | os.PathLike, fps: float | Callable[[], float]) -> None:
        self.path, self.fps = Path(path), fps
        self.frames = self.letterboxed = 0
        self.size: tuple[int, int] | None = None
        self._writer = None
        self._staged: StagedFile | None = None

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.close()

    def write(self, image_rgb: np.ndarray) -> None:
        import cv2

        if self._writer is None:
            self._open(image_rgb.shape[1], image_rgb.shape[0])
        if image_rgb.shape[:2] != self.size[::-1]:
            image_rgb = letterbox_into(image_rgb, self.size)
            self.letterboxed += 1
        self._writer.write(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1
        self._check_space()

    def _open(self, width: int, height: int) -> None:
        import cv2

        staged = StagedFile(self.path, suffix=".tmp" + self.path.suffix)  # OpenCV picks the container by it
        fps = self.fps() if callable(self.fps) else self.fps
        writer = cv2.VideoWriter(str(staged.path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():  # and fails silently without one
            staged.discard()
            raise DataError(f"cannot write video {self.path}: OpenCV cannot open it for mp4v "
                            "(the name must end in .mp4, its folder must be writable)")
        self._writer, self._staged, self.size = writer, staged, (width, height)

    def _check_space(self) -> None:
        stat = os.statvfs(self._staged.path)  # a file system of 0 blocks says nothing of its space (some FUSE)
        if stat.f_blocks and stat.f_bavail * stat.f_frsize < MIN_FREE_BYTES + 16 * self.frames:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))

    def close(self) -> None:
        """Finish the file and put it in place, if it holds every frame written; else drop it and
        raise (an earlier file of that name stays). Once; later calls do nothing."""
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        writer.release()
        held = frames_in(self._staged.path)
        if held != self.frames:
            self._staged.discard()
            raise OSError(errno.EIO, f"could not write the video: the file held {held} of the {self.frames} frames "
                                     "written (is the disk full, or the file over a size limit?)", str(self.path))
        self._staged.commit()


def frames_in(path: str | os.PathLike) -> int:
    """The frame count an MP4's index gives (0 for a file without one): read, not decoded."""
    import cv2

    if not _has_index(path):  # FFmpeg would say "moov atom not found" on stderr: a second line for one fault
        return 0
    capture = cv2.VideoCapture(str(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()


def _has_index(path: str | os.PathLike) -> bool:
    """Whether the MP4's top-level boxes (4-byte size, 4-byte type; size 1: a 64-bit size follows)
    include the index (``moov``), which the muxer writes last."""
    with open(path, "rb") as stream:
        end, position = os.fstat(stream.fileno()).st_size, 0
        while position + 8 <= end:
            stream.seek(position)
            size, kind = int.from_bytes(stream.read(4), "big"), stream.read(4)
            if kind == b"moov":
                return True
            if size == 1:
                size = int.from_bytes(stream.read(8), "big")
            if size < 8:  # 0: the box runs to the end of the file
                return False
            position += size
    return False


def letterbox_into(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to fit ``size`` (width, height), aspect kept, centred on black."""
    import cv2

    width, height = size
    scale = min(width / image.shape[1], height / image.shape[0])
    fitted_w, fitted_h = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))
    canvas = np.zeros((height, width, 3), np.uint8)
    top, left = (height - fitted_h) // 2, (width - fitted_w) // 2
    canvas[top:top + fitted_h, left:left + fitted_w] = cv2.resize(image, (fitted_w, fitted_h),
                                                                   interpolation=cv2.INTER_AREA)
    return canvas
