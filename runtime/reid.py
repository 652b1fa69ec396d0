"""Appearance re-identification of lost tracks (no torch, OpenCV only).

A motion tracker (ByteTrack) gives an object a new ID when it comes back after its track was lost:
the detector missed it for longer than the tracker's memory, or its predicted box drifted (an
object that turned while unseen). :class:`TrackStitcher` sits after the tracker: when the tracker
starts a new ID, it compares the box's colour (a hue-saturation histogram of the box's inner part)
with those of the IDs that are not in the frame and were seen within ``seconds``, near enough for
the time gone by, and gives the new track the most similar one's ID when the similarity (the
Bhattacharyya coefficient, 1 for equal histograms) is at least ``min_similarity``. Tracks in view
are never merged, and an ID is handed on at most once per frame, so stitching only ever joins
fragments of one object's history; a wrong join needs an object that looks like a lost one and
appears where that one could be.

Colour is a weak cue among objects that look alike (people in dark clothes): raise
``min_similarity`` or turn stitching off there. A learned embedding (BoT-SORT's ReID) would tell
such objects apart at the cost of a second network per box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Hue x saturation bins: enough to tell colours apart, few enough for boxes of ~20 px.
BINS = (16, 8)
#: Weight of a new look in a track's running histogram (its appearance drifts with light and pose).
UPDATE = 0.1
#: How far, in box sizes per second, an unseen object is allowed to have gone (plus one size).
MAX_SPEED = 2.0


@dataclass
class _Seen:
    histogram: np.ndarray
    time: float
    centre: np.ndarray
    size: float


def _place(box: np.ndarray) -> tuple[np.ndarray, float]:
    """A box's centre and its longer side (x1y1x2y2 pixels)."""
    return (box[:2] + box[2:]) / 2, float(max(box[2] - box[0], box[3] - box[1]))


def colour_histogram(image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """Normalised hue-saturation histogram of the inner two thirds of ``box`` (x1y1x2y2 pixels) in
    ``image`` (``(H, W, 3)`` uint8 RGB), where the background shows least; None for a box under 3 px."""
    import cv2

    height, width = image.shape[:2]
    x1, y1, x2, y2 = np.round(np.asarray(box, dtype=np.float64)).astype(int)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(width, x2), min(height, y2)
    if x2 - x1 < 3 or y2 - y1 < 3:
        return None
    dx, dy = (x2 - x1) // 6, (y2 - y1) // 6
    hsv = cv2.cvtColor(np.ascontiguousarray(image[y1 + dy : y2 - dy, x1 + dx : x2 - dx]), cv2.COLOR_RGB2HSV)
    histogram = cv2.calcHist([hsv], [0, 1], None, list(BINS), [0, 180, 0, 256]).ravel()
    return histogram / max(float(histogram.sum()), 1e-9)


class TrackStitcher:
    """Maps a tracker's IDs to stitched IDs (see the module docstring); one per source."""

    def __init__(self, *, min_similarity: float, seconds: float) -> None:
        self.min_similarity, self.seconds = min_similarity, seconds
        self._stitched: dict[int, int] = {}  # tracker ID -> stitched ID
        self._seen: dict[int, _Seen] = {}  # stitched ID -> its last look, time and place
        self._next = 1

    def update(self, ids: np.ndarray, boxes: np.ndarray, image: np.ndarray, time: float) -> np.ndarray:
        """Stitched IDs for the tracker's ``ids`` (``-1`` stays ``-1``) of ``boxes`` in ``image`` at ``time`` (s)."""
        out = np.full(len(ids), -1, dtype=np.int64)
        in_view = {self._stitched[i] for i in ids.tolist() if i in self._stitched}
        self._forget(time)
        for k, (track, box) in enumerate(zip(ids.tolist(), np.asarray(boxes, dtype=np.float64).reshape(-1, 4))):
            if track < 0:
                continue
            histogram = colour_histogram(image, box)
            if track not in self._stitched:
                self._stitched[track] = self._match(histogram, box, time, in_view)
                in_view.add(self._stitched[track])
            out[k] = stitched = self._stitched[track]
            self._remember(stitched, histogram, box, time)
        return out

    def _match(self, histogram: np.ndarray | None, box: np.ndarray, time: float, in_view: set[int]) -> int:
        best, best_similarity = None, self.min_similarity
        centre, size = _place(box)
        for stitched, seen in self._seen.items() if histogram is not None else ():
            reach = max(seen.size, size) * (1 + MAX_SPEED * (time - seen.time))
            if stitched in in_view or np.linalg.norm(centre - seen.centre) > reach:
                continue
            similarity = float(np.sqrt(histogram * seen.histogram).sum())
            if similarity >= best_similarity:
                best, best_similarity = stitched, similarity
        if best is None:
            best, self._next = self._next, self._next + 1
        return best

    def _remember(self, stitched: int, histogram: np.ndarray | None, box: np.ndarray, time: float) -> None:
        seen = self._seen.get(stitched)
        if histogram is None:
            if seen is None:
                return
            histogram = seen.histogram
        elif seen is not None:
            histogram = (1 - UPDATE) * seen.histogram + UPDATE * histogram
        self._seen[stitched] = _Seen(histogram, time, *_place(box))

    def _forget(self, time: float) -> None:
        """Bounded memory on runs of any length: IDs unseen for longer than ``seconds`` go."""
        for stitched in [s for s, seen in self._seen.items() if time - seen.time > self.seconds]:
            del self._seen[stitched]
        if len(self._stitched) > 4 * len(self._seen) + 1024:
            live = set(self._seen)
            self._stitched = {t: s for t, s in self._stitched.items() if s in live}
