"""Calibration images: where they come from and how they are batched (no torch).

A source is an image folder (searched recursively), a COCO ``instances`` json (the images it
lists), a video file (every n-th frame) or a glob pattern. :func:`collect_calibration_items` picks
``count`` items with a seeded shuffle; :func:`calibration_batches` decodes them and runs the
runtime's own :func:`retina_edge.preprocess.preprocess_batch`, so calibration sees exactly what
inference sees. Unreadable or non-image files are skipped and counted, never fatal, unless too
few usable images remain.
"""

from __future__ import annotations

import glob
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retina_edge.cache import cache_root
from retina_edge.errors import DataError
from retina_edge.imageio import IMAGE_SUFFIXES, decode_image_file, read_image_rgb
from retina_edge.preprocess import PreprocessConfig, preprocess_batch

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


@dataclass(frozen=True)
class CalibrationItem:
    """One calibration image: a file, or frame ``frame`` of a video file."""

    path: str
    frame: int = -1

    def key(self) -> str:
        return self.path if self.frame < 0 else f"{self.path}#{self.frame}"


@dataclass
class CalibrationReport:
    """What happened to the candidates: used, skipped (with a few reasons), not an image."""

    used: int = 0
    unreadable: int = 0
    not_images: int = 0
    examples: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.used} images used, {self.unreadable} unreadable skipped, {self.not_images} non-image files ignored"
        return text + (f" (e.g. {self.examples[0]})" if self.examples else "")


def collect_calibration_items(source: str, *, count: int, seed: int = 0, video_stride: int = 10,
                              report: CalibrationReport | None = None) -> list[CalibrationItem]:
    """Up to ``count`` items of ``source`` after a seeded shuffle (a stable order for caching)."""
    report = report if report is not None else CalibrationReport()
    items = _enumerate(source, video_stride, report)
    if not items:
        raise DataError(f"calibration source {source} holds no images")
    items.sort(key=CalibrationItem.key)
    random.Random(seed).shuffle(items)
    return items[: max(count * 2, count + 16)]  # spares, in case some turn out unreadable


def _enumerate(source: str, video_stride: int, report: CalibrationReport) -> list[CalibrationItem]:
    path = Path(source)
    if path.is_dir():
        files = [p for p in sorted(path.rglob("*")) if p.is_file()]
    elif path.is_file() and path.suffix.lower() == ".json":
        return _coco_items(path)
    elif path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return _video_items(path, video_stride)
    elif path.is_file():
        files = [path]
    else:
        files = [Path(p) for p in sorted(glob.glob(source, recursive=True)) if Path(p).is_file()]
        if not files:
            raise DataError(f"calibration source not found: {source} (a folder, COCO json, video or glob)")
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    report.not_images += len(files) - len(images)
    return [CalibrationItem(str(p)) for p in images]


def _coco_items(path: Path) -> list[CalibrationItem]:
    from retina_edge.data.coco_dataset import resolve_split

    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"cannot read calibration json {path}: {error}") from None
    _, image_dir = resolve_split(path, "")
    return [CalibrationItem(str(image_dir / img["file_name"])) for img in data.get("images", [])]


def _video_items(path: Path, stride: int) -> list[CalibrationItem]:
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    if frames <= 0:
        raise DataError(f"cannot read frames from calibration video {path}")
    return [CalibrationItem(str(path), frame) for frame in range(0, frames, max(1, stride))]


def usable_items(items: list[CalibrationItem], count: int, report: CalibrationReport) -> list[CalibrationItem]:
    """The first ``count`` items that decode (JPEGs at 1/8 scale, which is fast), counting the rest
    in ``report``, so a source with too few usable images is refused before any work starts."""
    import cv2

    usable = []
    for item in items:
        if len(usable) == count:
            break
        try:
            if item.frame >= 0:
                load_item(item)
            else:
                decode_image_file(item.path, cv2.IMREAD_REDUCED_GRAYSCALE_8)
        except (DataError, OSError) as error:
            report.unreadable += 1
            if len(report.examples) < 3:
                report.examples.append(str(error))
            continue
        usable.append(item)
    return usable


def load_item(item: CalibrationItem) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of one item; :class:`DataError` if it cannot be decoded."""
    if item.frame < 0:
        return read_image_rgb(item.path)
    import cv2

    from retina_edge.imageio import bgr_to_rgb

    capture = cv2.VideoCapture(item.path)
    try:
        capture.set(cv2.CAP_PROP_POS_FRAMES, item.frame)
        ok, frame = capture.read()
    finally:
        capture.release()
    if not ok:
        raise DataError(f"cannot decode frame {item.frame} of {item.path}")
    return bgr_to_rgb(frame)


def calibration_batches(items: list[CalibrationItem], preprocess: PreprocessConfig, *, count: int, batch_size: int,
                        min_images: int = 1, report: CalibrationReport | None = None,
                        progress=None) -> Iterator[tuple[np.ndarray, list[str]]]:  # noqa: ANN001
    """Yield ``((B, 3, H, W) float32 batch, item keys)`` until ``count`` images were used.

    Unreadable items are skipped and counted in ``report``. Raises :class:`DataError` at the end
    if fewer than ``min_images`` could be used.
    """
    report = report if report is not None else CalibrationReport()
    pending_images, pending_keys = [], []
    for item in items:
        if report.used >= count:
            break
        try:
            image = load_item(item)
        except DataError as error:
            report.unreadable += 1
            if len(report.examples) < 3:
                report.examples.append(str(error))
            continue
        pending_images.append(image)
        pending_keys.append(item.key())
        report.used += 1
        if progress:
            progress(report.used)
        if len(pending_images) == batch_size:
            yield preprocess_batch(pending_images, preprocess)[0], pending_keys
            pending_images, pending_keys = [], []
    if pending_images:
        yield preprocess_batch(pending_images, preprocess)[0], pending_keys
    if report.used < min_images:
        raise DataError(f"only {report.used} usable calibration images ({report.summary()}); "
                        f"at least {min_images} are needed")


def default_cache_dir() -> Path:
    """Where calibration statistics are cached (``RETINA_EDGE_CACHE`` or ``~/.cache/retina-edge``)."""
    return cache_root() / "calib"
