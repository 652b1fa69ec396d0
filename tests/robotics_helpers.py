"""Independent ROS 2 readers for the robotics tests: rosbags with the upstream ``.msg`` texts, and
mcap-ros2-support; plus frames from a real Detector over synthetic video for several sources."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

# vision_msgs 4.1.1 (github.com/ros-perception/vision_msgs, branch ros2: what Humble and Jazzy ship),
# field lines as upstream writes them (package-relative names included); comments dropped.
VISION_MSGS = {
    "vision_msgs/msg/Point2D": "float64 x\nfloat64 y\n",
    "vision_msgs/msg/Pose2D": "vision_msgs/Point2D position\nfloat64 theta\n",
    "vision_msgs/msg/BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "vision_msgs/msg/ObjectHypothesis": "string class_id\nfloat64 score\n",
    "vision_msgs/msg/ObjectHypothesisWithPose": "ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n",
    "vision_msgs/msg/Detection2D": ("std_msgs/Header header\nObjectHypothesisWithPose[] results\nBoundingBox2D bbox\n"
                                    "string id\n"),
    "vision_msgs/msg/Detection2DArray": "std_msgs/Header header\nDetection2D[] detections\n",
}
# foxglove_msgs 3.1.0 (github.com/foxglove/schemas, ros_foxglove_msgs/ros2).
FOXGLOVE_MSGS = {
    "foxglove_msgs/msg/Point2": "float64 x\nfloat64 y\n",
    "foxglove_msgs/msg/Color": "float64 r\nfloat64 g\nfloat64 b\nfloat64 a\n",
    "foxglove_msgs/msg/CircleAnnotation": ("builtin_interfaces/Time timestamp\nfoxglove_msgs/Point2 position\n"
                                           "float64 diameter\nfloat64 thickness\nfoxglove_msgs/Color fill_color\n"
                                           "foxglove_msgs/Color outline_color\n"),
    "foxglove_msgs/msg/PointsAnnotation": ("builtin_interfaces/Time timestamp\nuint8 UNKNOWN=0\nuint8 POINTS=1\n"
                                           "uint8 LINE_LOOP=2\nuint8 LINE_STRIP=3\nuint8 LINE_LIST=4\nuint8 type\n"
                                           "foxglove_msgs/Point2[] points\nfoxglove_msgs/Color outline_color\n"
                                           "foxglove_msgs/Color[] outline_colors\nfoxglove_msgs/Color fill_color\n"
                                           "float64 thickness\n"),
    "foxglove_msgs/msg/TextAnnotation": ("builtin_interfaces/Time timestamp\nfoxglove_msgs/Point2 position\n"
                                         "string text\nfloat64 font_size\nfoxglove_msgs/Color text_color\n"
                                         "foxglove_msgs/Color background_color\n"),
    "foxglove_msgs/msg/ImageAnnotations": ("foxglove_msgs/CircleAnnotation[] circles\n"
                                           "foxglove_msgs/PointsAnnotation[] points\n"
                                           "foxglove_msgs/TextAnnotation[] texts\n"),
}


def rosbags_store():
    """rosbags' Humble type store (sensor_msgs, std_msgs, geometry_msgs built in) + vision/foxglove msgs."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    for name, text in {**VISION_MSGS, **FOXGLOVE_MSGS}.items():
        store.register(get_types_from_msg(text, name))
    return store


def to_rosbags(store, typename: str, value):  # noqa: ANN001, ANN201
    """A plain message (dicts named as the fields) -> rosbags' message object, field by field."""
    from rosbags.typesys.store import Nodetype

    def build(kind, detail, item):  # noqa: ANN001, ANN202
        if kind == Nodetype.NAME:
            return to_rosbags(store, detail, item)
        if kind == Nodetype.BASE:
            return item
        (inner_kind, inner_detail), _ = detail
        if inner_kind == Nodetype.BASE and inner_detail[0] != "string":
            return np.asarray(bytearray(item) if isinstance(item, bytes) else item, dtype=inner_detail[0])
        return [build(inner_kind, inner_detail, element) for element in item]

    _, fields = store.fielddefs[typename]
    return store.types[typename](**{name: build(kind, detail, value[name]) for name, (kind, detail) in fields})


def plain(message):  # noqa: ANN001, ANN201
    """A decoded message (rosbags dataclass or mcap_ros2 object) -> dicts, lists and Python scalars."""
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message)
    if isinstance(message, np.ndarray):
        return message.tobytes() if message.dtype == np.uint8 else message.tolist()
    if isinstance(message, (list, tuple)):
        if message and isinstance(message[0], (int, float, str)):
            return list(message)  # a sequence of primitives (covariance: 36 floats in every hypothesis)
        return [plain(item) for item in message]
    fields = getattr(message, "__slots__", None) or getattr(message, "__dataclass_fields__", None)
    if fields is None or isinstance(message, (str, int, float)):
        return message
    return {name: plain(getattr(message, name)) for name in fields if not name.startswith("__")}


def mcap_ros2_codec(typename: str, schema_text: str):  # noqa: ANN201
    """(encoder, decoder) of mcap-ros2-support for ``typename`` parsed from ``schema_text``."""
    from mcap_ros2._dynamic import generate_dynamic, serialize_dynamic

    return serialize_dynamic(typename, schema_text)[typename], generate_dynamic(typename, schema_text)[typename]


def export_synth_model(folder: Path) -> Path:
    """The preset synthetic model as ONNX (``retina-edge export --weights preset:synth``)."""
    from retina_edge.cli.main import main

    path = folder / "m.onnx"
    assert main(["export", "--weights", "preset:synth", "-o", str(path)]) == 0
    return path


def detector_results(model: Path, frames: int, *, sources: int = 2, track: bool = False):  # noqa: ANN201
    """FrameResults of a real Detector run over synthetic videos, one per source, batched across
    sources (what the multi-source pipeline yields), in capture order; track IDs when ``track``."""
    from retina_edge.data.synth_video import SyntheticVideo
    from retina_edge.runtime import Detector
    from retina_edge.runtime.video import FrameResult

    videos = [SyntheticVideo(seed=seed + 1, width=320 - 32 * seed, height=240) for seed in range(sources)]
    results = []
    with Detector(model, backend="onnxruntime") as detector:
        for index in range(frames):
            images = [video.frame(index) for video in videos]
            captured = time.time()
            for source, (image, found) in enumerate(zip(images, detector.detect(images))):
                ids = np.arange(len(found), dtype=np.int64) + 100 * index if track else None
                results.append(FrameResult(index, captured + 0.001 * source, image, found, 0.0, 0.0, source,
                                           f"synthetic://{source}", ids))
    return results
