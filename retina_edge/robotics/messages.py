"""Detections -> ROS 2 messages as plain Python structures (dicts named and nested as the ``.msg`` fields).

``detection_array`` builds a ``vision_msgs/Detection2DArray`` (vision_msgs 4.x), one ``Detection2D``
per box: ``bbox`` centre and size in the image's pixels (``x1y1x2y2`` -> centre ``((x1+x2)/2,
(y1+y2)/2)``, ``size_x = x2 - x1``, ``size_y = y2 - y1``, ``theta = 0``), one
``ObjectHypothesisWithPose`` with the class and score (its 3D pose left at the message's default:
origin, identity rotation), the track ID as the decimal string ``Detection2D.id`` when tracking
(``""`` without tracking and for detections whose track is not confirmed, ID -1), and the image's header on the array and on each detection.
``image_annotations`` builds the ``foxglove_msgs/ImageAnnotations`` Foxglove draws over the image:
a closed outline and a label per box. :mod:`retina_edge.robotics.cdr` serializes both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from retina_edge.errors import RetinaEdgeError
from retina_edge.runtime.core.results import Detections

#: What ``ObjectHypothesis.class_id`` holds: the class name, or the dataset category id as a string.
CLASS_ID_KINDS = ("name", "category_id")
_IDENTITY_POSE = {"pose": {"position": {"x": 0.0, "y": 0.0, "z": 0.0},
                           "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}},
                  "covariance": [0.0] * 36}
#: Outline colours (RGB in [0, 1]), picked by track ID when tracking, else by class label.
PALETTE = ((0.90, 0.10, 0.29), (0.24, 0.71, 0.29), (1.00, 0.88, 0.10), (0.26, 0.39, 0.85), (0.96, 0.51, 0.19),
           (0.57, 0.12, 0.71), (0.27, 0.94, 0.94), (0.94, 0.20, 0.90), (0.74, 0.96, 0.05), (0.98, 0.75, 0.83))


def stamp(seconds: float) -> dict:
    """Wall-clock seconds since the epoch -> ``builtin_interfaces/Time`` (rounded to the nanosecond)."""
    whole = math.floor(seconds)
    # The fraction apart: seconds * 1e9 would round away the nanoseconds of today's epoch times.
    return stamp_of_ns(whole * 1_000_000_000 + round((seconds - whole) * 1e9))


def stamp_of_ns(nanoseconds: int) -> dict:
    sec, nanosec = divmod(int(nanoseconds), 1_000_000_000)
    return {"sec": sec, "nanosec": nanosec}


def stamp_ns(time: dict) -> int:
    """``builtin_interfaces/Time`` -> nanoseconds since the epoch (MCAP log time)."""
    return time["sec"] * 1_000_000_000 + time["nanosec"]


def header(time: dict, frame_id: str) -> dict:
    """``std_msgs/Header``."""
    return {"stamp": dict(time), "frame_id": frame_id}


def class_id_of(detections: Detections, label: int, kind: str) -> str:
    if kind == "name":
        return detections.name(label)
    if kind == "category_id":
        return str(detections.category_ids[label] if 0 <= label < len(detections.category_ids) else label)
    raise RetinaEdgeError(f"unknown class id kind {kind!r}; expected one of {CLASS_ID_KINDS}")


def detection_array(detections: Detections, image_header: dict, *, track_ids: np.ndarray | None = None,
                    class_id: str = "name") -> dict:
    """``vision_msgs/Detection2DArray`` for one image (see the module docstring); ``track_ids``:
    ``(N,)`` int, one per detection, or None."""
    boxes = np.asarray(detections.boxes, dtype=np.float64).reshape(-1, 4)
    # -1: a detection the tracker has not confirmed yet, so no ID (vision_msgs: "This field may be empty").
    ids = [""] * len(boxes) if track_ids is None else [str(int(v)) if v >= 0 else "" for v in track_ids]
    if len(ids) != len(boxes):
        raise RetinaEdgeError(f"{len(ids)} track ids for {len(boxes)} detections")
    items = []
    for (x1, y1, x2, y2), score, label, track in zip(boxes.tolist(), detections.scores.tolist(),
                                                     detections.labels.tolist(), ids):
        hypothesis = {"hypothesis": {"class_id": class_id_of(detections, int(label), class_id), "score": float(score)},
                      "pose": _IDENTITY_POSE}
        items.append({"header": image_header, "results": [hypothesis], "id": track,
                      "bbox": {"center": {"position": {"x": (x1 + x2) / 2, "y": (y1 + y2) / 2}, "theta": 0.0},
                               "size_x": x2 - x1, "size_y": y2 - y1}})
    return {"header": image_header, "detections": items}


def compressed_image(data: bytes, image_header: dict, image_format: str = "jpeg") -> dict:
    """``sensor_msgs/CompressedImage`` around encoded image bytes."""
    return {"header": image_header, "format": image_format, "data": data}


def _color(rgb: Sequence[float], alpha: float) -> dict:
    return {"r": float(rgb[0]), "g": float(rgb[1]), "b": float(rgb[2]), "a": alpha}


def image_annotations(detections: Detections, time: dict, *, track_ids: np.ndarray | None = None,
                      font_size: float = 12.0, thickness: float = 2.0) -> dict:
    """``foxglove_msgs/ImageAnnotations``: per box a ``LINE_LOOP`` outline (type 2) through its four
    corners and a label ``"name 0.87"`` (``" #ID"`` added when tracked) above its top-left corner,
    every annotation stamped ``time`` (the image's stamp, which Foxglove matches them by)."""
    points, texts = [], []
    boxes = np.asarray(detections.boxes, dtype=np.float64).reshape(-1, 4)
    for index, ((x1, y1, x2, y2), score, label) in enumerate(zip(boxes.tolist(), detections.scores.tolist(),
                                                                  detections.labels.tolist())):
        track = None if track_ids is None or track_ids[index] < 0 else int(track_ids[index])
        rgb = PALETTE[(track if track is not None else int(label)) % len(PALETTE)]
        corners = [{"x": x1, "y": y1}, {"x": x2, "y": y1}, {"x": x2, "y": y2}, {"x": x1, "y": y2}]
        points.append({"timestamp": dict(time), "type": 2, "points": corners, "outline_color": _color(rgb, 1.0),
                       "outline_colors": [], "fill_color": _color(rgb, 0.0), "thickness": thickness})
        label_text = f"{detections.name(int(label))} {score:.2f}" + ("" if track is None else f" #{track}")
        texts.append({"timestamp": dict(time), "position": {"x": x1, "y": max(y1 - 2.0, font_size)}, "text": label_text,
                      "font_size": font_size, "text_color": _color((1.0, 1.0, 1.0), 1.0),
                      "background_color": _color(rgb, 0.7)})
    return {"circles": [], "points": points, "texts": texts}
