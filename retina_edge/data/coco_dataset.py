"""COCO-format detection datasets (``instances_*.json`` + an image folder) for training and eval.

Category ids map to contiguous labels 0..K-1 in increasing id order (:class:`CocoIndex`); crowd
boxes are skipped; degenerate boxes (width or height < 1 px) are dropped and counted. Images are
read by :func:`retina_edge.imageio.read_image_rgb`, the one place colour order is converted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retina_edge.errors import DataError
from retina_edge.imageio import list_images, read_image_rgb


@dataclass(frozen=True)
class CocoImage:
    image_id: int
    path: Path
    height: int
    width: int
    boxes: np.ndarray  # (G, 4) float32 x1y1x2y2 pixels
    labels: np.ndarray  # (G,) int64 contiguous labels


@dataclass
class CocoIndex:
    """Parsed annotation file: images with their boxes, and the category <-> label mapping."""

    ann_file: Path
    image_dir: Path
    images: list[CocoImage]
    category_ids: tuple[int, ...]
    class_names: tuple[str, ...]
    dropped_degenerate: int = 0
    skipped_crowd: int = 0

    def require_boxes(self, images: list[CocoImage] | None = None, *, option: str | None = None) -> None:
        """AP needs ground truth: refuse ``images`` (default: all) when none of them keeps a box, as
        when every box is degenerate (AP would read 0.00 and every comparison would pass)."""
        images = self.images if images is None else images
        if not any(len(image.labels) for image in images):
            dropped = f" ({self.dropped_degenerate} degenerate boxes dropped, {self.skipped_crowd} crowd boxes skipped)"
            raise DataError(f"{self.ann_file} has no annotated boxes for its {len(images)} images"
                            f"{dropped if self.dropped_degenerate or self.skipped_crowd else ''}: AP needs ground truth",
                            option=option)


def resolve_split(data: str | os.PathLike, split: str) -> tuple[Path, Path]:
    """(annotation json, image folder) of ``data``: a dataset folder or an ``instances_*.json``.

    A folder holds ``annotations/instances_{split}.json`` and images in ``{split}/``; for a json
    ``.../annotations/instances_X.json`` the images are in ``.../X/`` (COCO's own layout).
    """
    path = Path(data)
    if path.is_dir():
        ann_file = path / "annotations" / f"instances_{split}.json"
    else:
        ann_file = path
    if not ann_file.is_file():
        raise DataError(f"annotation file not found: {ann_file}")
    name = ann_file.stem.removeprefix("instances_")
    root = ann_file.parent.parent if ann_file.parent.name == "annotations" else ann_file.parent
    image_dir = root / name
    return ann_file, image_dir if image_dir.is_dir() else root


def load_coco_index(ann_file: str | os.PathLike, image_dir: str | os.PathLike, *, check_files: bool = True) -> CocoIndex:
    """Parse and validate a COCO annotation file; every problem names the file it is in."""
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    try:
        data = json.loads(ann_file.read_text())
    except (OSError, ValueError) as error:  # ValueError: not JSON, or not text at all (a video, say)
        reason = "not a JSON text" if isinstance(error, UnicodeDecodeError) else error
        raise DataError(f"cannot read annotation file {ann_file}: {reason}") from None
    if not isinstance(data, dict):
        raise DataError(f"{ann_file} is not a COCO instances file: a JSON {type(data).__name__}, not an object "
                        "with 'images', 'annotations' and 'categories'")
    try:
        return _index(data, ann_file, image_dir, check_files)
    except KeyError as error:
        raise DataError(f"{ann_file} is not a COCO instances file: an entry has no {error}") from None
    except (TypeError, ValueError) as error:
        raise DataError(f"{ann_file} is not a COCO instances file: {error}") from None


def _index(data: dict, ann_file: Path, image_dir: Path, check_files: bool) -> CocoIndex:
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{ann_file} is not a COCO instances file: missing list '{key}'")
    if not data["images"]:
        raise DataError(f"{ann_file} lists no images: the dataset is empty")
    categories = sorted(data["categories"], key=lambda c: c["id"])
    label_of = {c["id"]: i for i, c in enumerate(categories)}
    per_image: dict[int, list] = {img["id"]: [] for img in data["images"]}
    dropped = crowd = 0
    for ann in data["annotations"]:
        if ann["category_id"] not in label_of:
            raise DataError(f"{ann_file}: annotation {ann.get('id')} has category_id {ann['category_id']}, "
                            f"which is not declared in 'categories'")
        if ann["image_id"] not in per_image:
            raise DataError(f"{ann_file}: annotation {ann.get('id')} refers to unknown image_id {ann['image_id']}")
        if ann.get("iscrowd", 0):
            crowd += 1
            continue
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise DataError(f"{ann_file}: annotation {ann.get('id')} has bbox {json.dumps(bbox)[:80]}, not 4 numbers "
                            "(x, y, width, height)")
        x, y, w, h = bbox
        if w < 1 or h < 1:
            dropped += 1
            continue
        per_image[ann["image_id"]].append((x, y, x + w, y + h, label_of[ann["category_id"]]))
    images = []
    missing = []
    for img in data["images"]:
        path = image_dir / img["file_name"]
        if check_files and not path.is_file():
            missing.append(str(path))
            continue
        rows = np.asarray(per_image[img["id"]], dtype=np.float64).reshape(-1, 5)
        images.append(CocoImage(img["id"], path, int(img["height"]), int(img["width"]),
                                rows[:, :4].astype(np.float32), rows[:, 4].astype(np.int64)))
    if missing:
        raise DataError(f"{ann_file} names {len(missing)} image(s) missing from {image_dir}, e.g. {missing[0]}")
    return CocoIndex(ann_file, image_dir, images, tuple(c["id"] for c in categories),
                     tuple(c["name"] for c in categories), dropped, crowd)


def load_images(folder: str | os.PathLike, count: int, ann: str | os.PathLike | None = None
                ) -> tuple[list[np.ndarray], list[int] | None]:
    """The first ``count`` images of ``folder`` (those the COCO json ``ann`` lists, if given) as RGB
    arrays, and their COCO image ids (None without ``ann``)."""
    if count < 1:
        raise DataError(f"the image count must be at least 1, got {count}")
    if ann:
        index = load_coco_index(ann, folder)
        records = index.images[:count]
        index.require_boxes(records, option="ann")
        images = [read_image_rgb(r.path) for r in records]
        wrong = [(r, image.shape[:2]) for r, image in zip(records, images) if image.shape[:2] != (r.height, r.width)]
        if wrong:
            record, (height, width) = wrong[0]
            raise DataError(f"{len(wrong)} of {len(images)} images in {folder} do not have the size {ann} gives them, "
                            f"e.g. {record.path.name}: {width}x{height} on disk, {record.width}x{record.height} in the "
                            "annotations: are these the annotations of this folder?")
        return images, [r.image_id for r in records]
    files = list_images(folder)[:count]
    if not files:
        raise DataError(f"no images in {folder}")
    return [read_image_rgb(p) for p in files], None
