"""Reading images: the one place where OpenCV's BGR becomes the RGB every model here expects (no torch)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from retina_edge.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def list_images(folder: str | os.PathLike, *, recursive: bool = True) -> list[Path]:
    """Image files of ``folder`` (by suffix), sorted; subfolders too unless ``recursive`` is off."""
    folder = Path(folder)
    paths = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in paths if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to an ``(H, W, 3)`` uint8 RGB array; grey and alpha are converted.

    Raises :class:`DataError` naming the file when it is missing or not a decodable image.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise DataError(f"image not found: {path}")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DataError(f"cannot decode image (unreadable or not an image): {path}")
    return bgr_to_rgb(image)


def bgr_to_rgb(image: np.ndarray) -> np.ndarray:
    """Swap the channel order of an ``(H, W, 3)`` image (BGR <-> RGB), contiguous."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"expected an (H, W, 3) colour image, got shape {image.shape}")
    return np.ascontiguousarray(image[:, :, ::-1])


def write_image_rgb(path: str | os.PathLike, image: np.ndarray, *, quality: int = 95) -> None:
    """Encode an ``(H, W, 3)`` uint8 RGB array to ``path`` (format from the suffix), atomically."""
    import cv2

    from retina_edge.atomic import write_bytes_atomic

    suffix = Path(path).suffix.lower() or ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if suffix in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(suffix, bgr_to_rgb(image), params)
    if not ok:
        raise DataError(f"cannot encode image as {suffix}: {path}")
    write_bytes_atomic(path, encoded.tobytes())


def load_images(folder: str | os.PathLike, count: int, ann: str | os.PathLike | None = None
                ) -> tuple[list[np.ndarray], list[int] | None]:
    """The first ``count`` images of ``folder`` (those the COCO json ``ann`` lists, if given) as RGB
    arrays, and their COCO image ids (None without ``ann``)."""
    if count < 1:
        raise DataError(f"the image count must be at least 1, got {count}")
    if ann:
        from retina_edge.coco_dataset import load_coco_index

        records = load_coco_index(ann, folder).images[:count]
        return [read_image_rgb(r.path) for r in records], [r.image_id for r in records]
    files = list_images(folder)[:count]
    if not files:
        raise DataError(f"no images in {folder}")
    return [read_image_rgb(p) for p in files], None
