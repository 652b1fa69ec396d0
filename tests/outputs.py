"""Reading what a run wrote, independently of the writers: frames an MP4 decodes to (OpenCV's reader),
JSON lines, and the lines of a run's temporary ``.NAME.*.tmp`` (JSON lines are put in place at the end)."""

from __future__ import annotations

import json
from pathlib import Path


def frame_count(path) -> int:  # noqa: ANN001
    """Frames OpenCV decodes from ``path`` (0 for a file it cannot open)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def lines(path) -> list[dict]:  # noqa: ANN001
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def written_lines(folder, name: str) -> int:  # noqa: ANN001
    """Lines so far in a run's temporary ``.NAME.*.tmp`` beside ``NAME`` in ``folder``."""
    return sum(len(path.read_bytes().splitlines()) for path in Path(folder).glob(f".{name}.*.tmp"))
