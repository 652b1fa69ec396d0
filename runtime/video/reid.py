"""Appearance checks on a motion tracker's IDs (no torch, OpenCV only).

A motion tracker (ByteTrack) matches boxes by where it predicts them, so it makes three mistakes
that an object's look can undo. :class:`TrackStitcher` sits after the tracker, keeps each ID's
running colour (a hue-saturation histogram of the box's inner part) and, frame by frame:

- **stitches**: when the tracker starts a new ID, the box takes the ID of the most similar object
  not in view that was seen within ``seconds``, near enough for the time gone by, when the
  similarity (the Bhattacharyya coefficient, 1 for equal histograms) is at least
  ``min_similarity``: an object back after its track was lost (missed longer than the tracker's
  memory, or its predicted box drifted) keeps its ID. A new track too covered to judge gets a new
  ID, which it trades for a lost one at its first clear look (objects come back from behind others);
- **exchanges**: two tracks whose boxes touched within :data:`CONTACT_SECONDS` and now each look
  more like the other's ID (by :data:`EXCHANGE_MARGIN`) exchange IDs: the tracker swapped them
  where they crossed;
- **releases**: a track that looks unlike its own ID (similarity under :data:`RELEASE_BELOW`) gives
  it up and is stitched as a new track (``min_similarity`` applies): the tracker moved it onto
  another object while its own was missed, and the ID is free again for its object's return, in
  the same frame or later.

Looks are judged, and learnt, only from boxes at most :data:`CLEAR` covered by another track's box
(an overlapped box mixes two objects). Two tracks in view never share an ID.

Colour is a weak cue among objects that look alike (people in dark clothes): raise
``min_similarity`` or turn the checks off there. A learned embedding (BoT-SORT's ReID) would tell
such objects apart at the cost of a second network per box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retina_edge.runtime.core.nms import intersections

#: Hue x saturation bins: enough to tell colours apart, few enough for boxes of ~20 px.
BINS = (16, 8)
#: Weight of a new look in a track's running histogram (its appearance drifts with light and pose).
UPDATE = 0.1
#: How far, in box sizes per second, an unseen object is allowed to have gone (plus one size).
MAX_SPEED = 2.0
#: The most of a box (a fraction of the smaller of two boxes) another track's box may cover for
#: the box's look to count: beyond it the histogram is as much the other object's.
CLEAR = 0.5
#: How long after two boxes touched a swap of their IDs is still looked for.
CONTACT_SECONDS = 3.0
#: How much more (summed over the two) the crossed looks must match to exchange two IDs.
EXCHANGE_MARGIN = 0.1
#: A track whose look matches its own ID less than this has been moved onto another object.
RELEASE_BELOW = 0.5


@dataclass
class _Seen:
    histogram: np.ndarray
    time: float
    centre: np.ndarray
    size: float


@dataclass
class _Frame:
    """One update's tracked boxes: ``tracks`` (tracker IDs), ``boxes`` ``(T, 4)``, their looks
    (None: too small), which are clear of other tracks' boxes, ``overlap`` ``(T, T)``, and
    ``places``: the boxes in the scene's coordinates."""

    tracks: list[int]
    boxes: np.ndarray
    looks: list[np.ndarray | None]
    clear: np.ndarray
    overlap: np.ndarray
    places: np.ndarray


def _place(box: np.ndarray) -> tuple[np.ndarray, float]:
    """A box's centre and its longer side (x1y1x2y2 pixels)."""
    return (box[:2] + box[2:]) / 2, float(max(box[2] - box[0], box[3] - box[1]))


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(a * b).sum())


def overlap_fractions(boxes: np.ndarray) -> np.ndarray:
    """``(N, N)``: the intersection of each two x1y1x2y2 boxes over the smaller one's area, 0 on the diagonal."""
    inter = intersections(boxes, boxes)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    fractions = inter / np.maximum(np.minimum(area[:, None], area[None, :]), 1e-9)
    np.fill_diagonal(fractions, 0.0)
    return fractions


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
    """Maps a tracker's IDs to checked IDs (see the module docstring); one per source."""

    def __init__(self, *, min_similarity: float, seconds: float) -> None:
        self.min_similarity, self.seconds = min_similarity, seconds
        self._stitched: dict[int, int] = {}  # tracker ID -> stitched ID
        self._seen: dict[int, _Seen] = {}  # stitched ID -> its running look, last time and place
        # Keyed by tracker IDs: it is the tracker that swaps them, whatever stitched IDs they carry.
        self._contacts: dict[tuple[int, int], float] = {}  # two tracker IDs whose boxes touched -> when
        self._next = 1

    def update(self, ids: np.ndarray, boxes: np.ndarray, image: np.ndarray, time: float,
               places: np.ndarray | None = None) -> np.ndarray:
        """Stitched IDs for the tracker's ``ids`` (``-1`` stays ``-1``) of ``boxes`` in ``image`` at ``time`` (s).
        ``places``: the same boxes in the scene's coordinates when the camera moves (see
        :mod:`retina_edge.runtime.video.camera_motion`), where an unseen object's reach is judged; None: ``boxes``."""
        ids = np.asarray(ids, dtype=np.int64)
        rows = np.flatnonzero(ids >= 0)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        places = boxes if places is None else np.asarray(places, dtype=np.float64).reshape(-1, 4)
        frame = _frame(ids[rows].tolist(), boxes[rows], image, places[rows])
        self._forget(time, keep=set(frame.tracks))
        known = [k for k, track in enumerate(frame.tracks) if track in self._stitched]
        in_view = {self._stitched[frame.tracks[k]] for k in known}
        self._exchange(frame, known, time)
        self._release(frame, known, time, in_view)  # first: an ID released is free for its object below
        for k, track in enumerate(frame.tracks):
            # new tracks, and tracks whose ID has no look yet (never clear so far): stitched when clear
            if track not in self._stitched or self._stitched[track] not in self._seen:
                self._stitch(frame, k, time, in_view)
        out = np.full(len(ids), -1, dtype=np.int64)
        for k, (row, track) in enumerate(zip(rows, frame.tracks)):
            out[row] = self._stitched[track]
            self._remember(self._stitched[track], frame.looks[k] if frame.clear[k] else None, frame.places[k], time)
        return out

    def _stitch(self, frame: _Frame, k: int, time: float, in_view: set[int]) -> None:
        """Track ``k`` takes the lost ID it looks like; a new track that does not (or is not clear
        enough to judge) gets a new ID, which it can still trade for a lost one once clear."""
        track = frame.tracks[k]
        found = self._match(frame.looks[k] if frame.clear[k] else None, frame.places[k], time, in_view)
        if found is None and track in self._stitched:
            return
        self._assign(track, found if found is not None else self._fresh())
        in_view.add(self._stitched[track])

    def _match(self, histogram: np.ndarray | None, place: np.ndarray, time: float, in_view: set[int]) -> int | None:
        """The most similar ID not in view that could have got to ``place`` (a box in the scene) by
        ``time``, if any is similar enough."""
        best, best_similarity = None, self.min_similarity
        centre, size = _place(place)
        for stitched, seen in self._seen.items() if histogram is not None else ():
            reach = max(seen.size, size) * (1 + MAX_SPEED * (time - seen.time))
            if stitched in in_view or np.linalg.norm(centre - seen.centre) > reach:
                continue
            similarity = _similarity(histogram, seen.histogram)
            if similarity >= best_similarity:
                best, best_similarity = stitched, similarity
        return best

    def _fresh(self) -> int:
        self._next += 1
        return self._next - 1

    def _assign(self, track: int, stitched: int) -> None:
        """``track`` takes ``stitched``; a lost tracker ID that had it loses it, so that if the tracker
        revives that track it is matched afresh instead of showing a second box with the same ID."""
        for other in [t for t, s in self._stitched.items() if s == stitched and t != track]:
            del self._stitched[other]
        self._stitched[track] = stitched

    def _exchange(self, frame: _Frame, known: list[int], time: float) -> None:
        """Swap the IDs of two tracks that touched lately when each now looks like the other's ID."""
        for i, j in zip(*np.nonzero(np.triu(frame.overlap) > 0)):
            self._contacts[tuple(sorted((frame.tracks[i], frame.tracks[j])))] = time
        where = {frame.tracks[k]: k for k in known}
        for pair, when in list(self._contacts.items()):
            k, other = where.get(pair[0]), where.get(pair[1])
            if time - when > CONTACT_SECONDS:
                del self._contacts[pair]
            elif k is not None and other is not None and self._crossed_fit(frame, k, other) > EXCHANGE_MARGIN:
                first, second = pair
                self._stitched[first], self._stitched[second] = self._stitched[second], self._stitched[first]
                del self._contacts[pair]

    def _crossed_fit(self, frame: _Frame, k: int, other: int) -> float:
        """How much better boxes ``k`` and ``other`` match each other's IDs than their own (0 when unjudgeable)."""
        looks = frame.looks[k], frame.looks[other]
        seen = self._seen.get(self._stitched[frame.tracks[k]]), self._seen.get(self._stitched[frame.tracks[other]])
        if not (frame.clear[k] and frame.clear[other]) or any(x is None for x in (*looks, *seen)):
            return 0.0
        own = _similarity(looks[0], seen[0].histogram) + _similarity(looks[1], seen[1].histogram)
        return _similarity(looks[0], seen[1].histogram) + _similarity(looks[1], seen[0].histogram) - own

    def _release(self, frame: _Frame, known: list[int], time: float, in_view: set[int]) -> None:
        """A track that looks unlike its ID takes a lost ID it looks like, or a new one; its old ID
        leaves the view, free for its object's return."""
        for k in known:
            track, look = frame.tracks[k], frame.looks[k]
            old = self._stitched[track]
            seen = self._seen.get(old)
            if seen is None or look is None or not frame.clear[k] or _similarity(look, seen.histogram) >= RELEASE_BELOW:
                continue
            found = self._match(look, frame.places[k], time, in_view)
            self._assign(track, found if found is not None else self._fresh())
            in_view.discard(old)
            in_view.add(self._stitched[track])

    def _remember(self, stitched: int, histogram: np.ndarray | None, place: np.ndarray, time: float) -> None:
        seen = self._seen.get(stitched)
        if histogram is None:
            if seen is None:
                return
            histogram = seen.histogram
        elif seen is not None:
            histogram = (1 - UPDATE) * seen.histogram + UPDATE * histogram
        self._seen[stitched] = _Seen(histogram, time, *_place(place))

    def _forget(self, time: float, keep: set[int]) -> None:
        """Bounded memory on runs of any length: IDs unseen for longer than ``seconds`` go, and
        tracker IDs of theirs that are not in view (``keep``)."""
        for stitched in [s for s, seen in self._seen.items() if time - seen.time > self.seconds]:
            del self._seen[stitched]
        if len(self._stitched) > 4 * len(self._seen) + 1024:
            live = set(self._seen)
            self._stitched = {t: s for t, s in self._stitched.items() if s in live or t in keep}


def _frame(tracks: list[int], boxes: np.ndarray, image: np.ndarray, places: np.ndarray) -> _Frame:
    overlap = overlap_fractions(boxes)
    looks = [colour_histogram(image, box) for box in boxes]
    return _Frame(tracks, boxes, looks, overlap.max(axis=1, initial=0.0) <= CLEAR, overlap, places)
