"""The topics of each source and the messages of one processed frame on them.

Source ``i`` (its index in the pipeline's list of sources) gets three topics, each one schema:

======================================  ====================================  ==========================
``/camera_i/image/compressed``          ``sensor_msgs/msg/CompressedImage``   the frame, JPEG
``/camera_i/detections``                ``vision_msgs/msg/Detection2DArray``  boxes, classes, track IDs
``/camera_i/annotations``               ``foxglove_msgs/msg/ImageAnnotations`` what Foxglove draws
======================================  ====================================  ==========================

All three carry the frame's capture time as their stamp and log time, and ``camera_i`` as frame id.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from retina_edge.imageio import encode_image_rgb
from retina_edge.robotics import cdr, messages
from retina_edge.robotics.definitions import COMPRESSED_IMAGE, DETECTION_ARRAY, IMAGE_ANNOTATIONS
from retina_edge.errors import RetinaEdgeError
from retina_edge.runtime.video import FrameResult


@dataclass(frozen=True)
class Channel:
    """One topic: its ``schema`` (``pkg/msg/Type``) and the source it belongs to (index and spec)."""

    topic: str
    schema: str
    source: int
    source_name: str


@dataclass(frozen=True)
class Message:
    """One serialized message (CDR, encapsulation header included); ``log_time`` in ns since the epoch."""

    topic: str
    data: bytes
    log_time: int


@dataclass(frozen=True)
class MessageOptions:
    """``jpeg_quality`` of the recorded frames; ``class_id``: what ``ObjectHypothesis.class_id``
    holds, ``"name"`` or ``"category_id"`` (see :mod:`retina_edge.robotics.messages`)."""

    jpeg_quality: int = 85
    class_id: str = "name"

    def __post_init__(self) -> None:
        if not 1 <= self.jpeg_quality <= 100:
            raise RetinaEdgeError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if self.class_id not in messages.CLASS_ID_KINDS:
            raise RetinaEdgeError(f"unknown class id kind {self.class_id!r}; expected one of {messages.CLASS_ID_KINDS}")


def frame_id(source: int) -> str:
    return f"camera_{source}"


def topics(source: int) -> tuple[str, str, str]:
    """Source ``source``'s image, detections and annotations topics."""
    prefix = f"/{frame_id(source)}"
    return f"{prefix}/image/compressed", f"{prefix}/detections", f"{prefix}/annotations"


def channels_for(source_names: Sequence[str]) -> list[Channel]:
    """Every source's three channels, source by source (see the module docstring)."""
    return [Channel(topic, schema, source, name) for source, name in enumerate(source_names)
            for topic, schema in zip(topics(source), (COMPRESSED_IMAGE, DETECTION_ARRAY, IMAGE_ANNOTATIONS))]


def frame_messages(result: FrameResult, options: MessageOptions = MessageOptions(),
                   wanted: Collection[str] | None = None) -> list[Message]:
    """A processed frame's messages (image, detections, annotations, in that order), only those on
    ``wanted`` topics when given (an unwanted image is not even JPEG-encoded)."""
    time = messages.stamp(result.timestamp)
    image_header = messages.header(time, frame_id(result.source))
    log_time = messages.stamp_ns(time)
    image_topic, detections_topic, annotations_topic = topics(result.source)
    found = []
    if wanted is None or image_topic in wanted:
        jpeg = encode_image_rgb(result.image, ".jpg", quality=options.jpeg_quality, target=image_topic)
        found.append(Message(image_topic, cdr.encode_compressed_image(messages.compressed_image(jpeg, image_header)),
                             log_time))
    if wanted is None or detections_topic in wanted:
        detections = messages.detection_array(result.detections, image_header, track_ids=result.track_ids,
                                              class_id=options.class_id)
        found.append(Message(detections_topic, cdr.encode_detection_array(detections), log_time))
    if wanted is None or annotations_topic in wanted:
        annotations = messages.image_annotations(result.detections, time, track_ids=result.track_ids)
        found.append(Message(annotations_topic, cdr.encode_image_annotations(annotations), log_time))
    return found
