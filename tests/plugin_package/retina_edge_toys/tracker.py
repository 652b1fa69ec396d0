"""Tracker ``greedy-iou``: each detection (best score first, every score) takes the ID of the previous
frame's box it overlaps most (IoU >= 0.3, each ID once), else a new ID."""

import numpy as np


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    x2, y2 = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda box: (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


class GreedyIou:
    def __init__(self, options) -> None:  # noqa: ANN001 - retina_edge's TrackerOptions
        self.boxes, self.ids, self.next_id = np.zeros((0, 4)), np.zeros(0, dtype=np.int64), 1

    def update(self, detections, timestamp=None, image=None) -> np.ndarray:  # noqa: ANN001
        boxes = np.asarray(detections.boxes, dtype=float).reshape(-1, 4)
        ids = np.full(len(boxes), -1, dtype=np.int64)
        overlap = _iou(boxes, self.boxes) if len(self.boxes) else np.zeros((len(boxes), 0))
        taken = set()
        for row in np.argsort(-np.asarray(detections.scores)):
            choices = [c for c in np.argsort(-overlap[row]) if overlap[row, c] >= 0.3 and c not in taken]
            if choices:
                taken.add(choices[0])
                ids[row] = self.ids[choices[0]]
            else:
                ids[row], self.next_id = self.next_id, self.next_id + 1
        self.boxes, self.ids = boxes, ids
        return ids
