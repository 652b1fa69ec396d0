"""Drawing detections on images (OpenCV, no torch)."""

from __future__ import annotations

import numpy as np

from retina_edge.runtime.core.results import Detections

#: Drawn outputs show only detections scoring at least this. The models keep everything above 0.05
#: (torchvision's threshold, right for COCO AP and for the data outputs), which drew 32 boxes on a
#: 240x242 image; Ultralytics draws from 0.25, DeepStream's samples from 0.2-0.4.
DISPLAY_SCORE = 0.3


def class_colour(label: int) -> tuple[int, int, int]:
    """A stable, distinct RGB colour per label or track ID (golden-angle hues)."""
    import cv2

    hue = int((label * 137.508) % 180)
    hsv = np.array([[[hue, 200, 255]]], dtype=np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def draw_detections(image: np.ndarray, detections: Detections, *, track_ids: np.ndarray | None = None,
                    min_score: float = DISPLAY_SCORE, thickness: int = 2) -> np.ndarray:
    """A copy of ``(H, W, 3)`` uint8 RGB ``image`` with boxes and "name score" labels of the
    detections scoring at least ``min_score``. With ``track_ids`` (``(N,)``, -1 for none) a tracked
    box is coloured by its ID, the same colour in every frame, and labelled "#ID name score"."""
    import cv2

    canvas = image.copy()
    scale = max(0.35, min(image.shape[:2]) / 900)
    ids = track_ids if track_ids is not None else np.full(len(detections), -1)
    for det, track_id in zip(detections, ids):
        if det.score < min_score:
            continue
        colour = class_colour(int(track_id)) if track_id >= 0 else class_colour(det.label)
        x1, y1, x2, y2 = (int(round(v)) for v in det.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_AA)
        text = (f"#{int(track_id)} " if track_id >= 0 else "") + f"{det.name} {det.score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = max(0, y1 - th - base - 2)
        cv2.rectangle(canvas, (x1, top), (x1 + tw + 2, top + th + base + 2), colour, -1)
        cv2.putText(canvas, text, (x1 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def draw_result(result, fps: float | None = None, *, min_score: float = DISPLAY_SCORE) -> np.ndarray:  # noqa: ANN001
    """A pipeline result's frame with its detections scoring at least ``min_score`` (track IDs when
    tracked) and a status line (frames per second, capture-to-result latency, inference time)."""
    import cv2

    canvas = draw_detections(result.image, result.detections, track_ids=result.track_ids, min_score=min_score)
    text = (f"{fps:5.1f} FPS  " if fps is not None else "") + (
        f"latency {result.latency_ms:5.0f} ms  infer {result.inference_ms:4.0f} ms")
    outlined_text(canvas, text, (6, 16), 0.45)
    return canvas


def outlined_text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    """White ``text`` with a black outline, readable on any background, drawn into ``canvas``. The
    outline is the same 1 px text shifted around it: a thicker stroke would not do, since OpenCV 5
    widens each glyph's advance with the thickness, so a thick outline drifts off the text (12 px
    over a 40-character status line)."""
    import cv2

    x, y = origin
    for dx, dy in ((-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)):
        cv2.putText(canvas, text, (x + dx, y + dy), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
