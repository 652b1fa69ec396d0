"""Reading images: the one place where OpenCV's BGR becomes the RGB every model here expects (no torch)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from retina_edge.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: Largest image decoded (pixels): 100 MP is beyond any camera a detector is fed from.
MAX_IMAGE_PIXELS = 100_000_000


#: Image formats not read here (OpenCV reads no GIF, HEIC, AVIF or SVG): a folder's files of these
#: are named as skipped rather than passed over without a word.
UNREAD_IMAGE_SUFFIXES = (".gif", ".heic", ".heif", ".avif", ".svg")


def list_images(folder: str | os.PathLike, *, recursive: bool = True) -> list[Path]:
    """Image files of ``folder`` (by suffix), sorted; subfolders too unless ``recursive`` is off."""
    folder = Path(folder)
    paths = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in paths if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def skipped_files(folder: str | os.PathLike, *, recursive: bool = True) -> list[str]:
    """What :func:`list_images` leaves out of ``folder`` that looks meant as an image, as ``name
    (why)``: a format not read here, or an image's name that is no file (a broken or looping link)."""
    import errno

    folder, found = Path(folder), []
    for path in sorted(folder.rglob("*") if recursive else folder.iterdir()):
        suffix, name = path.suffix.lower(), path.relative_to(folder)
        if suffix in UNREAD_IMAGE_SUFFIXES:
            found.append(f"{name} ({suffix[1:].upper()} is not read; convert it to PNG or JPEG)")
        elif suffix in IMAGE_SUFFIXES and path.is_symlink() and not path.is_file():
            try:
                path.stat()
                continue  # a link to a folder
            except OSError as error:
                found.append(f"{name} ({'a link that loops' if error.errno == errno.ELOOP else 'a broken link'})")
    return found


def read_image_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to an ``(H, W, 3)`` uint8 RGB array; grey and alpha are converted.

    Raises :class:`DataError` naming the file when it is missing or not a decodable image.
    """
    import cv2

    image = decode_image_file(path, cv2.IMREAD_COLOR)
    return bgr_to_rgb(image)


def decode_image_file(path: str | os.PathLike, flags: int) -> np.ndarray:
    """``cv2.imdecode`` of a file, refusing images over :data:`MAX_IMAGE_PIXELS` from their header,
    before decoding (a 1 MB PNG can hold 20000x20000 pixels: 1.2 GB decoded, 5 GB as float32)."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise DataError(f"image not found: {path}")
    return _decode(np.fromfile(path, dtype=np.uint8), flags, str(path))


def decode_image_bytes(data: bytes, *, source: str = "image bytes") -> np.ndarray:
    """Encoded JPEG/PNG/... ``data`` -> ``(H, W, 3)`` uint8 RGB, with the same limits and errors as
    :func:`read_image_rgb` (what a server gets from a camera client)."""
    import cv2

    return bgr_to_rgb(_decode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR, source))


def _decode(data: np.ndarray, flags: int, source: str) -> np.ndarray:
    import cv2

    size = header_size(data[:1 << 16].tobytes())
    if size and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise DataError(f"{source} is {size[1]}x{size[0]} pixels ({size[0] * size[1] / 1e6:.0f} MP), over the "
                        f"{MAX_IMAGE_PIXELS / 1e6:.0f} MP retina-edge decodes (the network sees at most its input "
                        "size): downscale it first")
    image = _imdecode(data, flags) if data.size else None
    if image is None:
        raise DataError(f"cannot decode image (unreadable or not an image): {source}")
    return image


def _imdecode(data: np.ndarray, flags: int) -> np.ndarray | None:
    """``cv2.imdecode``, None for anything it cannot decode. OpenCV 5.1 fails an assertion (it
    raises) when asked to decode at 1/N size an image smaller than N pixels in a side: that one is
    decoded at full size instead; any other exception is a file it cannot decode."""
    import cv2

    try:
        return cv2.imdecode(data, flags)
    except cv2.error:
        full_size = {cv2.IMREAD_REDUCED_GRAYSCALE_2: cv2.IMREAD_GRAYSCALE, cv2.IMREAD_REDUCED_GRAYSCALE_4: cv2.IMREAD_GRAYSCALE,
                     cv2.IMREAD_REDUCED_GRAYSCALE_8: cv2.IMREAD_GRAYSCALE, cv2.IMREAD_REDUCED_COLOR_2: cv2.IMREAD_COLOR,
                     cv2.IMREAD_REDUCED_COLOR_4: cv2.IMREAD_COLOR, cv2.IMREAD_REDUCED_COLOR_8: cv2.IMREAD_COLOR}.get(flags)
        return _imdecode(data, full_size) if full_size is not None else None


def header_size(head: bytes) -> tuple[int, int] | None:
    """(H, W) from a PNG or JPEG header (the first bytes of the file), None for other formats."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24:
        return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
    if head.startswith(b"\xff\xd8"):
        offset = 2
        while offset + 9 <= len(head) and head[offset] == 0xFF:
            marker, length = head[offset + 1], int.from_bytes(head[offset + 2 : offset + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                return int.from_bytes(head[offset + 5 : offset + 7], "big"), int.from_bytes(head[offset + 7 : offset + 9], "big")
            offset += 2 + length
    return None


def bgr_to_rgb(image: np.ndarray) -> np.ndarray:
    """Swap the channel order of an ``(H, W, 3)`` image (BGR <-> RGB), contiguous."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"expected an (H, W, 3) colour image, got shape {image.shape}")
    return np.ascontiguousarray(image[:, :, ::-1])


def encode_image_rgb(image: np.ndarray, suffix: str = ".jpg", *, quality: int = 95, target: str = "bytes") -> bytes:
    """An ``(H, W, 3)`` uint8 RGB array encoded as ``suffix`` (``.jpg`` at ``quality``, ``.png``, ...);
    the twin of :func:`decode_image_bytes`. ``target`` names the destination in errors."""
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if suffix in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(suffix, bgr_to_rgb(image), params)
    if not ok:
        raise DataError(f"cannot encode image as {suffix}: {target}")
    return encoded.tobytes()


def write_image_rgb(path: str | os.PathLike, image: np.ndarray, *, quality: int = 95) -> None:
    """Encode an ``(H, W, 3)`` uint8 RGB array to ``path`` (format from the suffix), atomically."""
    from retina_edge.atomic import write_bytes_atomic

    suffix = Path(path).suffix.lower() or ".jpg"
    write_bytes_atomic(path, encode_image_rgb(image, suffix, quality=quality, target=str(path)))
