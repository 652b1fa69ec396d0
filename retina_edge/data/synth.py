"""Synthetic COCO-format detection data: the toolkit's offline stand-in for COCO (no torch).

Each image has a textured background, unannotated clutter, and 1..``max_objects`` shapes of
several classes with varied size (about 16..230 px, so every pyramid level P3..P7 of a small model
gets objects), aspect ratio and colour (hue hints at the class; saturation, brightness and clutter of similar colours keep it from deciding alone).
Objects occlude each other; boxes are the *visible* extent (COCO convention), computed from an
instance map, and objects less than ``min_visible`` visible are not annotated.
Everything is deterministic given the seed: image ``i`` uses its own generator seeded from
``(seed, i)``, so any subset can be regenerated identically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retina_edge.atomic import write_text_atomic
from retina_edge.imageio import write_image_rgb
from retina_edge.progress import Progress

CLASSES = ("ellipse", "rectangle", "triangle", "diamond", "cross", "star")
_CLASS_HUES = (0, 30, 60, 90, 120, 150)  # OpenCV hue (0..180), jittered by +-10: a cue, not a giveaway


@dataclass(frozen=True)
class SynthConfig:
    """Sizes are pixels. ``val_fraction`` of the images (the last ones) form the val split."""

    num_images: int = 500
    seed: int = 0
    min_side: int = 240
    max_side: int = 320
    max_objects: int = 6
    min_object: int = 16
    max_object: int = 230
    min_visible: float = 0.5
    val_fraction: float = 0.2


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    import cv2

    coarse = rng.uniform(40, 215, size=(rng.integers(2, 6), rng.integers(2, 6), 3)).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0, rng.uniform(2, 8), size=(height, width, 1)).astype(np.float32)
    image = image + fine
    if rng.random() < 0.5:  # stripes or a grid pattern, as on floors, walls and shelves
        period = rng.integers(6, 30)
        axis = np.arange(width if rng.random() < 0.5 else height)
        wave = (np.sin(2 * np.pi * axis / period) * rng.uniform(4, 12)).astype(np.float32)
        image += wave[None, :, None] if axis.size == width else wave[:, None, None]
    return np.clip(image, 0, 255).astype(np.uint8)


def _clutter(rng: np.random.Generator, image: np.ndarray) -> None:
    """Unannotated lines and grey blobs: things a detector must learn to ignore."""
    import cv2

    height, width = image.shape[:2]
    for _ in range(rng.integers(1, 5)):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.line(image, p1, p2, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    for _ in range(rng.integers(0, 5)):
        grey = int(rng.integers(30, 226))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(3, 18)), int(rng.integers(3, 18)))
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, (grey, grey, grey), -1, cv2.LINE_AA)


def _shape_points(kind: str, x: float, y: float, w: float, h: float) -> np.ndarray:
    """Polygon of a shape filling the box (x, y, w, h)."""
    cx, cy = x + w / 2, y + h / 2
    if kind == "rectangle":
        pts = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    elif kind == "triangle":
        pts = [(cx, y), (x + w, y + h), (x, y + h)]
    elif kind == "diamond":
        pts = [(cx, y), (x + w, cy), (cx, y + h), (x, cy)]
    elif kind == "cross":
        tw, th = w / 3, h / 3
        pts = [(x + tw, y), (x + 2 * tw, y), (x + 2 * tw, y + th), (x + w, y + th), (x + w, y + 2 * th),
               (x + 2 * tw, y + 2 * th), (x + 2 * tw, y + h), (x + tw, y + h), (x + tw, y + 2 * th),
               (x, y + 2 * th), (x, y + th), (x + tw, y + th)]
    elif kind == "star":
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        pts = list(zip(cx + radii * np.cos(angles) * w / 2, cy + radii * np.sin(angles) * h / 2))
    else:
        raise ValueError(kind)
    return np.round(np.asarray(pts, dtype=np.float64) * 16).astype(np.int32)  # 4 fractional bits


def _draw(image: np.ndarray, ids: np.ndarray, kind: str, box: tuple[float, float, float, float],
          colour: tuple[int, int, int], instance: int) -> int:
    """Paint one shape onto ``image`` and claim its pixels in ``ids``; returns its full pixel area."""
    import cv2

    own = np.zeros(ids.shape, dtype=np.uint8)
    x, y, w, h = box
    if kind == "ellipse":
        centre = (int(round((x + w / 2) * 16)), int(round((y + h / 2) * 16)))
        axes = (int(round(w / 2 * 16)), int(round(h / 2 * 16)))
        cv2.ellipse(image, centre, axes, 0, 0, 360, colour, -1, cv2.LINE_AA, shift=4)
        cv2.ellipse(own, centre, axes, 0, 0, 360, 1, -1, cv2.LINE_8, shift=4)
    else:
        pts = _shape_points(kind, x, y, w, h)
        cv2.fillPoly(image, [pts], colour, cv2.LINE_AA, shift=4)
        cv2.fillPoly(own, [pts], 1, cv2.LINE_8, shift=4)
    ids[own > 0] = instance
    return int(np.count_nonzero(own))


def _object_colour(rng: np.random.Generator, label: int) -> tuple[int, int, int]:
    import cv2

    hue = (_CLASS_HUES[label] + rng.integers(-10, 11)) % 180
    hsv = np.array([[[hue, rng.integers(110, 256), rng.integers(110, 256)]]], dtype=np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def render_image(config: SynthConfig, index: int) -> tuple[np.ndarray, list[tuple[int, list[float]]]]:
    """Image ``index``: ``(H, W, 3)`` uint8 RGB and ``[(label, [x, y, w, h]), ...]`` visible boxes."""
    rng = np.random.default_rng([config.seed, index])
    height, width = (int(v) for v in rng.integers(config.min_side, config.max_side + 1, size=2))
    image = _background(rng, height, width)
    _clutter(rng, image)
    ids = np.zeros((height, width), dtype=np.int32)
    objects = []
    largest = min(config.max_object, 0.9 * min(height, width))
    for instance in range(1, int(rng.integers(1, config.max_objects + 1)) + 1):
        label = int(rng.integers(len(CLASSES)))
        side = float(np.exp(rng.uniform(np.log(config.min_object), np.log(largest))))
        aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        w, h = side * min(1.0, aspect), side * min(1.0, 1 / aspect)
        x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
        area = _draw(image, ids, CLASSES[label], (x, y, w, h), _object_colour(rng, label), instance)
        objects.append((instance, label, area))
    boxes = []
    for instance, label, area in objects:
        ys, xs = np.nonzero(ids == instance)
        if area == 0 or xs.size < min_visible_pixels(area, config.min_visible):
            continue
        x0, y0 = float(xs.min()), float(ys.min())
        boxes.append((label, [x0, y0, float(xs.max()) + 1 - x0, float(ys.max()) + 1 - y0]))
    return image, boxes


def min_visible_pixels(area: int, min_visible: float) -> int:
    """Pixels an object must keep visible to be annotated (at least 4)."""
    return max(4, int(np.ceil(area * min_visible)))


def write_dataset(out_dir: str | Path, config: SynthConfig, *, progress: bool = False) -> dict[str, Path]:
    """Write ``train/``, ``val/`` JPEGs and ``annotations/instances_{train,val}.json`` under ``out_dir``.

    Returns the annotation file of each split. Category ids are 1..K in :data:`CLASSES` order.
    """
    out = Path(out_dir)
    num_val = max(1, int(round(config.num_images * config.val_fraction))) if config.num_images > 1 else 0
    splits = {"train": range(0, config.num_images - num_val), "val": range(config.num_images - num_val, config.num_images)}
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASSES)]
    written = {}
    for split, indices in splits.items():
        images, annotations = [], []
        bar = Progress(len(indices), f"synth {split}", enabled=progress)
        for index in indices:
            image, boxes = render_image(config, index)
            file_name = f"{index:06d}.jpg"
            write_image_rgb(out / split / file_name, image, quality=92)
            images.append({"id": index + 1, "file_name": file_name, "height": image.shape[0], "width": image.shape[1]})
            for label, bbox in boxes:
                annotations.append({
                    "id": len(annotations) + 1, "image_id": index + 1, "category_id": label + 1,
                    "bbox": [round(v, 2) for v in bbox], "area": round(bbox[2] * bbox[3], 2), "iscrowd": 0,
                })
            bar.update(index - indices.start + 1)
        path = out / "annotations" / f"instances_{split}.json"
        payload = {"images": images, "annotations": annotations, "categories": categories,
                   "info": {"description": "retina-edge synthetic shapes", "seed": config.seed}}
        write_text_atomic(path, json.dumps(payload))
        written[split] = path
    return written
