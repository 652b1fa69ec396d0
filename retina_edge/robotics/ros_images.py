"""Incoming ROS 2 images -> ``(H, W, 3)`` uint8 RGB arrays, from their CDR bytes (no ROS needed).

``sensor_msgs/Image`` in ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8`` or ``mono8`` (rows may be padded:
``step`` >= width x channels), and ``sensor_msgs/CompressedImage`` in any format OpenCV decodes
(``jpeg``, ``png``, and image_transport's ``"bgr8; jpeg compressed bgr8"`` forms).
"""

from __future__ import annotations

import numpy as np

from retina_edge.errors import DataError
from retina_edge.imageio import decode_image_bytes
from retina_edge.robotics import cdr

#: Image encoding -> (channels, index order that makes RGB).
_ENCODINGS = {"rgb8": (3, [0, 1, 2]), "bgr8": (3, [2, 1, 0]), "rgba8": (4, [0, 1, 2]), "bgra8": (4, [2, 1, 0]),
              "mono8": (1, [0, 0, 0])}
ENCODINGS = tuple(_ENCODINGS)


def rgb_from_image(message: dict) -> np.ndarray:
    """A decoded ``sensor_msgs/Image`` (:func:`~retina_edge.robotics.cdr.decode_image`) -> RGB."""
    encoding, height, width, step = message["encoding"], message["height"], message["width"], message["step"]
    if encoding not in _ENCODINGS:
        raise DataError(f"image encoding {encoding!r} is not supported; expected one of {ENCODINGS}")
    channels, order = _ENCODINGS[encoding]
    data = np.frombuffer(message["data"], dtype=np.uint8)
    if step < width * channels or data.size < height * step:
        raise DataError(f"{encoding} image of {width}x{height} with step {step} holds only {data.size} bytes")
    rows = data[: height * step].reshape(height, step)[:, : width * channels].reshape(height, width, channels)
    return np.ascontiguousarray(rows[:, :, order])


def decode(data: bytes, *, compressed: bool) -> tuple[dict, np.ndarray]:
    """CDR of a ``sensor_msgs/CompressedImage`` (``compressed``) or ``sensor_msgs/Image`` -> (its
    ``std_msgs/Header`` as a dict, the RGB image)."""
    if compressed:
        message = cdr.decode_compressed_image(data)
        return message["header"], decode_image_bytes(bytes(message["data"]), source=f"{message['format']} image")
    message = cdr.decode_image(data)
    return message["header"], rgb_from_image(message)
