"""BoT-SORT, OC-SORT and SORT from Roboflow's ``trackers`` (Apache-2.0) behind the tracker door (no torch).

Each is a :class:`~retina_edge.runtime.video.tracking.LibraryTracker` (the adapter ByteTrack uses:
detections under ``min_score`` get ID -1, IDs come back in the detections' order) built from
:class:`~retina_edge.runtime.video.tracking.TrackerOptions`, and registered in
:data:`~retina_edge.runtime.video.tracking.TRACKERS` when this module is imported (the table imports
it with its built-in ``bytetrack``):

- ``botsort``: BoT-SORT's association (ByteTrack's high- and low-score stages with IoU fused with
  the detection's score, and a stage of its own for unconfirmed tracks). Its camera-motion
  compensation is the runtime's (:mod:`retina_edge.runtime.video.camera_motion`, the same
  ``trackers.CMC``, applied before any tracker), so its own is off; its appearance ReID needs a
  second network and is not used (the colour checks stand in);
- ``ocsort``: OC-SORT (observation-centric re-update after occlusion, direction consistency,
  recovery from a track's last observation); it has no low-score stage;
- ``sort``: SORT (one IoU association of the detections with the Kalman predictions).

``McByteTracker`` is left out: what sets it apart is mask propagation by SAM/Cutie (torch, a GPU),
which the torch-free runtime cannot carry; without masks it is ByteTrack with camera-motion
compensation, which ``bytetrack`` is here.
"""

from __future__ import annotations

from retina_edge.runtime.video.tracking import LibraryTracker, TrackerOptions, TrackerSpec, register_tracker


class BoTSortTracker(LibraryTracker):
    """``trackers.BoTSORTTracker``; ``min_iou`` bounds its first stage's IoU x score (BoT-SORT fuses the two)."""

    def make(self, trackers, options: TrackerOptions):  # noqa: ANN001, ANN201
        return trackers.BoTSORTTracker(
            lost_track_buffer=options.lost_frames, frame_rate=options.frame_rate,
            track_activation_threshold=options.activation_score, minimum_consecutive_frames=options.confirm_frames,
            minimum_iou_threshold_first_assoc=options.min_iou, high_conf_det_threshold=options.high_score,
            enable_cmc=False)


class OcSortTracker(LibraryTracker):
    """``trackers.OCSORTTracker``: detections under the higher of ``activation_score`` and
    ``high_score`` are neither matched nor start a track (it has no low-score stage)."""

    def make(self, trackers, options: TrackerOptions):  # noqa: ANN001, ANN201
        return trackers.OCSORTTracker(
            lost_track_buffer=options.lost_frames, frame_rate=options.frame_rate,
            minimum_consecutive_frames=options.confirm_frames, minimum_iou_threshold=options.min_iou,
            high_conf_det_threshold=max(options.activation_score, options.high_score))


class SortTracker(LibraryTracker):
    """``trackers.SORTTracker``."""

    def make(self, trackers, options: TrackerOptions):  # noqa: ANN001, ANN201
        return trackers.SORTTracker(
            lost_track_buffer=options.lost_frames, frame_rate=options.frame_rate,
            track_activation_threshold=options.activation_score, minimum_consecutive_frames=options.confirm_frames,
            minimum_iou_threshold=options.min_iou)


for _name, _factory, _description in (
        ("botsort", BoTSortTracker, "BoT-SORT (trackers): ByteTrack's stages with IoU fused with the score"),
        ("ocsort", OcSortTracker, "OC-SORT (trackers): observation-centric recovery after occlusion"),
        ("sort", SortTracker, "SORT (trackers): one IoU association with constant-velocity boxes")):
    register_tracker(TrackerSpec(_name, _factory, module="trackers", description=_description))
