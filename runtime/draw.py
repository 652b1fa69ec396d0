"""Drawing detections on images (OpenCV, no torch)."""

from __future__ import annotations

import numpy as np

from retina_edge.runtime.results import Detections


def class_colour(label: int) -> tuple[int, int, int]:
    """A stable, distinct RGB colour per label (golden-angle hues)."""
    import cv2

    hue = int((label * 137.508) % 180)
    hsv = np.array([[[hue, 200, 255]]], dtype=np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def draw_detections(image: np.ndarray, detections: Detections, *, thickness: int = 2) -> np.ndarray:
    """A copy of ``(H, W, 3)`` uint8 RGB ``image`` with boxes and "name score" labels."""
    import cv2

    canvas = image.copy()
    scale = max(0.35, min(image.shape[:2]) / 900)
    for det in detections:
        colour = class_colour(det.label)
        x1, y1, x2, y2 = (int(round(v)) for v in det.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_AA)
        text = f"{det.name} {det.score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = max(0, y1 - th - base - 2)
        cv2.rectangle(canvas, (x1, top), (x1 + tw + 2, top + th + base + 2), colour, -1)
        cv2.putText(canvas, text, (x1 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas
