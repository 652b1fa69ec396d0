"""Track identities across the frames of one source (no torch).

:class:`Tracker` is what the pipeline needs: ``update(detections, timestamp, image)`` -> one
integer ID per detection, in the detections' order, stable while the object stays in view; ``-1`` for
a detection not (yet) part of a confirmed track. The trackers are a table (:data:`TRACKERS`,
``--tracker``): :class:`ByteTracker` is ByteTrack from Roboflow's ``trackers`` package (Apache-2.0;
``pip install 'retina-edge[track]'``), imported only when a tracker is made, BoT-SORT, OC-SORT and
SORT from the same package are in :mod:`retina_edge.runtime.video.library_trackers`, and a plugin adds
its own with :func:`register_tracker`. :func:`make_tracker` builds the one ``TrackerOptions.tracker``
names, fed boxes in the scene's coordinates while the camera moves
(:mod:`retina_edge.runtime.video.camera_motion`, ``camera_motion``). The pipeline keeps one tracker
per source, so IDs are per source. Given the frame, a
:class:`retina_edge.runtime.video.reid.TrackStitcher` checks any tracker's IDs against each
object's colours (``reid_similarity``; see that module): an object back after its track was lost
keeps its old ID, IDs swapped where two objects crossed are swapped back, and a track moved onto
another object gives its ID back (:class:`SceneTracker` chains the three).

Why ``trackers``: it is Apache-2.0 (BoxMOT is AGPL), maintained by Roboflow, and is where
``supervision``'s ByteTrack moved (``supervision`` 0.31 no longer ships one); it tracks by wall-clock
``timestamp`` as well as by frame count, which live sources that drop frames need.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from retina_edge.errors import ConfigError
from retina_edge.registry import Registry
from retina_edge.runtime.core.results import Detections
from retina_edge.runtime.video.camera_motion import METHODS as MOTION_METHODS


class Tracker(Protocol):
    def update(self, detections: Detections, timestamp: float | None = None, image: np.ndarray | None = None) -> np.ndarray:
        """``(N,)`` int64 track IDs for ``detections`` (x1y1x2y2 pixels), ``-1`` for unconfirmed ones.
        ``timestamp``: capture time in seconds (None: one frame after the previous call); ``image``:
        the ``(H, W, 3)`` uint8 RGB frame, for appearance (None: motion only)."""


@dataclass(frozen=True)
class TrackerOptions:
    """Tracking settings. ``tracker``: a registered tracker (:data:`TRACKERS`: ``bytetrack`` and any
    plugin's); the rest are ByteTrack's and apply to trackers that have them. ``min_score``: detections below it are not tracked (ID -1); the model's
    own threshold is often set low for AP, and low-score duplicates would otherwise be kept alive as
    tracks by ByteTrack's low-score stage. ``lost_frames``: how many frames (at ``frame_rate``) a track that lost its
    object is kept for re-association. ``activation_score``: the lowest score that starts a track;
    ``high_score`` separates the first (high) and second (low-score recovery) association stages
    (``trackers`` starts tracks only from detections left over by the first, so the higher of the
    two is what starts one);
    ``min_iou``: the least overlap of a detection with a track's predicted box to match it;
    ``confirm_frames``: consecutive matches before a track gets its ID. ``reid_similarity``: the
    least colour similarity (0..1) for a new track to take the ID of a lost one seen within
    ``reid_seconds`` (None: no appearance checks, see :mod:`retina_edge.runtime.video.reid`).
    ``camera_motion``: compensate the camera's motion, estimated by ``motion_method`` (see
    :mod:`retina_edge.runtime.video.camera_motion`; off for a camera that never moves, which saves its cost)."""

    tracker: str = "bytetrack"
    camera_motion: bool = True
    motion_method: str = "sparseOptFlow"
    min_score: float = 0.5
    lost_frames: int = 30
    frame_rate: float = 30.0
    activation_score: float = 0.6
    high_score: float = 0.6
    min_iou: float = 0.1
    confirm_frames: int = 1
    reid_similarity: float | None = 0.8
    reid_seconds: float = 10.0

    def __post_init__(self) -> None:
        unit = ("min_score", "activation_score", "high_score", "min_iou") + (
            ("reid_similarity",) if self.reid_similarity is not None else ())
        rules = [(name, "from 0 to 1", lambda v: 0 <= v <= 1) for name in unit]
        rules += [(name, f"a whole number of at least {least}",
                   lambda v, least=least: isinstance(v, (int, np.integer)) and v >= least)
                  for name, least in (("lost_frames", 0), ("confirm_frames", 1))]
        rules += [(name, "a number above 0", lambda v: 0 < v < float("inf")) for name in ("frame_rate", "reid_seconds")]
        rules.append(("motion_method", f"one of {', '.join(MOTION_METHODS)}", lambda v: v in MOTION_METHODS))
        bad = [(name, rule) for name, rule, ok in rules if not ok(getattr(self, name))]  # nan fails every comparison
        if bad:
            raise ConfigError("TrackerOptions: " + "; ".join(f"{name} must be {rule}, got {getattr(self, name)!r}"
                                                             for name, rule in bad), option=tuple(n for n, _ in bad))


@dataclass(frozen=True)
class TrackerSpec:
    """A registered motion tracker. ``factory(options)`` returns an object with
    ``update(detections, timestamp, image) -> (N,) int64 ids`` (the :class:`Tracker` protocol; the
    colour checks are added around it by :func:`make_tracker`); ``module``: the package it needs
    (its install hint when missing); ``description``: one line for ``--tracker``'s help."""

    name: str
    factory: Callable[[TrackerOptions], Tracker]
    module: str | None = None
    description: str = ""


def _builtin_trackers() -> None:
    register_tracker(TrackerSpec("bytetrack", ByteTracker, module="trackers",
                                 description="ByteTrack (trackers): two-stage association by IoU, constant-velocity boxes"))
    # BoT-SORT, OC-SORT and SORT register themselves on import (imported by name: they import this module)
    importlib.import_module("retina_edge.runtime.video.library_trackers")


#: Tracker name -> :class:`TrackerSpec`; ``TrackerOptions.tracker`` and ``--tracker`` name one.
TRACKERS: Registry[TrackerSpec] = Registry("tracker", builtins=_builtin_trackers)


def register_tracker(spec: TrackerSpec, *, replace: bool = False) -> TrackerSpec:
    return TRACKERS.register(spec.name, spec, replace=replace)


def unregister_tracker(name: str) -> None:
    TRACKERS.unregister(name)


class LibraryTracker:
    """A :class:`Tracker` over one of ``trackers``' trackers (built by :meth:`make`, given the
    ``supervision``-style detections it takes): detections under ``min_score`` get ID -1, and
    each ID is mapped back to its detection whatever order the library returns them in."""

    def __init__(self, options: TrackerOptions) -> None:
        from retina_edge.optional import require

        self._min_score = options.min_score
        self._sv = require("supervision", "tracking")
        self._tracker = self.make(require("trackers", "tracking"), options)

    def make(self, trackers, options: TrackerOptions):  # noqa: ANN001, ANN201 - the trackers module
        raise NotImplementedError

    def update(self, detections: Detections, timestamp: float | None = None, image: np.ndarray | None = None) -> np.ndarray:
        kept = np.flatnonzero(np.asarray(detections.scores) >= self._min_score)
        # The library may reorder its output; each detection carries its position to map IDs back.
        found = self._sv.Detections(xyxy=np.asarray(detections.boxes, dtype=np.float32).reshape(-1, 4)[kept],
                                    confidence=np.asarray(detections.scores, dtype=np.float32)[kept],
                                    class_id=np.asarray(detections.labels, dtype=int)[kept],
                                    data={"position": kept})
        tracked = self._track(found, timestamp, image)
        ids = np.full(len(detections), -1, dtype=np.int64)
        if len(tracked):
            ids[np.asarray(tracked.data["position"], dtype=int)] = np.asarray(tracked.tracker_id, dtype=np.int64)
        return ids

    def _track(self, found, timestamp: float | None, image: np.ndarray | None):  # noqa: ANN001, ANN202
        return self._tracker.update(found, timestamp=timestamp)


class ByteTracker(LibraryTracker):
    """``trackers.ByteTrackTracker`` with :class:`TrackerOptions`' settings."""

    def make(self, trackers, options: TrackerOptions):  # noqa: ANN001, ANN201
        return trackers.ByteTrackTracker(
            lost_track_buffer=options.lost_frames, frame_rate=options.frame_rate,
            track_activation_threshold=options.activation_score, minimum_consecutive_frames=options.confirm_frames,
            minimum_iou_threshold=options.min_iou, high_conf_det_threshold=options.high_score)


class SceneTracker:
    """``tracker`` (any :class:`Tracker`) with camera-motion compensation and colour checks as
    ``options`` say; one per source. Per frame, :class:`~retina_edge.runtime.video.camera_motion.CameraMotion`
    maps the detections into the scene's coordinates (``camera_motion`` on and the frame given), the
    motion tracker gives IDs to the mapped boxes (it is given the frame only when its boxes are the
    frame's, with compensation off: a tracker that looks into the frame must see boxes where they are
    in it), and :class:`~retina_edge.runtime.video.reid.TrackStitcher` (``reid_similarity`` set)
    checks the IDs against each object's colours in the frame, judging an unseen object's reach in
    the scene."""

    def __init__(self, tracker: Tracker, options: TrackerOptions) -> None:
        self.motion, self.camera, self.stitcher = tracker, None, None
        if options.camera_motion:
            from retina_edge.runtime.video.camera_motion import CameraMotion

            self.camera = CameraMotion(method=options.motion_method)
        if options.reid_similarity is not None:
            from retina_edge.runtime.video.reid import TrackStitcher

            self.stitcher = TrackStitcher(min_similarity=options.reid_similarity, seconds=options.reid_seconds)
        self._frame_rate, self._frames = options.frame_rate, 0

    def update(self, detections: Detections, timestamp: float | None = None, image: np.ndarray | None = None) -> np.ndarray:
        self._frames += 1
        boxes = np.asarray(detections.boxes, dtype=np.float32).reshape(-1, 4)
        places = boxes
        if self.camera is not None:
            if image is not None:
                self.camera.update(image, boxes)
            places = self.camera.to_scene(boxes).astype(np.float32)
            detections = Detections(places, detections.scores, detections.labels, detections.class_names,
                                    detections.category_ids)
        ids = self.motion.update(detections, timestamp, image if self.camera is None else None)
        if self.stitcher is None or image is None:
            return ids
        time = timestamp if timestamp is not None else self._frames / self._frame_rate
        return self.stitcher.update(ids, boxes, image, time, places=places)


def make_tracker(options: TrackerOptions | None = None) -> Tracker:
    """The tracker ``options.tracker`` names (ByteTrack by default), fed scene coordinates unless
    ``options.camera_motion`` is off, with the colour checks unless ``options.reid_similarity`` is None."""
    options = options or TrackerOptions()
    tracker = TRACKERS.get(options.tracker).factory(options)
    return tracker if options.reid_similarity is None and not options.camera_motion else SceneTracker(tracker, options)
