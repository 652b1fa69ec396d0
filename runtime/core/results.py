"""The runtime's result type: detections of one image in source-image pixels (no torch)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from retina_edge.config import category_id_of


@dataclass(frozen=True)
class Detection:
    """One box: x1y1x2y2 source pixels, score in [0, 1], contiguous label, its dataset category id
    (what every output file writes) and its class name."""

    box: tuple[float, float, float, float]
    score: float
    label: int
    name: str
    category_id: int


@dataclass(frozen=True)
class Detections:
    """Detections of one image, by decreasing score.

    ``boxes``: ``(N, 4)`` float32 x1y1x2y2 in the source image's pixels; ``scores``: ``(N,)``
    float32; ``labels``: ``(N,)`` int64 contiguous labels; ``class_names[label]`` names them and
    ``category_ids[label]`` gives their dataset category ids (the label itself when empty).
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: Sequence[str] = ()
    category_ids: Sequence[int] = ()

    def __len__(self) -> int:
        return len(self.scores)

    def __iter__(self) -> Iterator[Detection]:
        for box, score, label in zip(self.boxes, self.scores, self.labels):
            yield Detection(tuple(float(v) for v in box), float(score), int(label), self.name(int(label)),
                            category_id_of(int(label), self.category_ids))

    def name(self, label: int) -> str:
        return self.class_names[label] if 0 <= label < len(self.class_names) else f"class_{label}"

    def filter(self, *, score_thresh: float = 0.0, classes: Sequence[int] | None = None) -> Detections:
        """Subset scoring above ``score_thresh`` (as the model's threshold: ``score > score_thresh``)
        and, optionally, with labels in ``classes``."""
        keep = self.scores > score_thresh
        if classes is not None:
            keep &= np.isin(self.labels, np.asarray(list(classes)))
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep], self.class_names, self.category_ids)

    def as_tuple(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.boxes, self.scores, self.labels

    def to_json(self) -> list[dict]:
        """Plain list of ``{"box": [x1, y1, x2, y2], "score", "category_id", "name"}`` (for JSON lines;
        the category ids ``--save-json`` and ``--classes`` use)."""
        return [{"box": [round(v, 2) for v in d.box], "score": round(d.score, 4), "category_id": d.category_id,
                 "name": d.name} for d in self]
