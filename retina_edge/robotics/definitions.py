"""ROS 2 message definitions (``ros2msg``) of what retina-edge publishes, records and reads.

Field lists as in the ROS 2 packages: ``sensor_msgs`` and ``std_msgs`` (common_interfaces),
``vision_msgs`` 4.x (the version Humble and Jazzy ship: ``BoundingBox2D.center`` is a
``vision_msgs/Pose2D`` with a ``Point2D position``), ``foxglove_msgs`` 3.x. :func:`schema` gives a
type's definition followed by every type it uses, in the concatenated form MCAP files and
Foxglove WebSocket channels carry (``===`` separator lines, ``MSG: pkg/Type`` headers).
"""

from __future__ import annotations

import re

_DEFINITIONS = {
    "builtin_interfaces/Time": "int32 sec\nuint32 nanosec\n",
    "std_msgs/Header": "builtin_interfaces/Time stamp\nstring frame_id\n",
    "sensor_msgs/CompressedImage": "std_msgs/Header header\nstring format\nuint8[] data\n",
    "sensor_msgs/Image": ("std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\n"
                          "uint32 step\nuint8[] data\n"),
    "geometry_msgs/Point": "float64 x\nfloat64 y\nfloat64 z\n",
    "geometry_msgs/Quaternion": "float64 x 0\nfloat64 y 0\nfloat64 z 0\nfloat64 w 1\n",
    "geometry_msgs/Pose": "geometry_msgs/Point position\ngeometry_msgs/Quaternion orientation\n",
    "geometry_msgs/PoseWithCovariance": "geometry_msgs/Pose pose\nfloat64[36] covariance\n",
    "vision_msgs/Point2D": "float64 x\nfloat64 y\n",
    "vision_msgs/Pose2D": "vision_msgs/Point2D position\nfloat64 theta\n",
    "vision_msgs/BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "vision_msgs/ObjectHypothesis": "string class_id\nfloat64 score\n",
    "vision_msgs/ObjectHypothesisWithPose": ("vision_msgs/ObjectHypothesis hypothesis\n"
                                             "geometry_msgs/PoseWithCovariance pose\n"),
    "vision_msgs/Detection2D": ("std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\n"
                                "vision_msgs/BoundingBox2D bbox\nstring id\n"),
    "vision_msgs/Detection2DArray": "std_msgs/Header header\nvision_msgs/Detection2D[] detections\n",
    "foxglove_msgs/Point2": "float64 x\nfloat64 y\n",
    "foxglove_msgs/Color": "float64 r\nfloat64 g\nfloat64 b\nfloat64 a\n",
    "foxglove_msgs/CircleAnnotation": ("builtin_interfaces/Time timestamp\nfoxglove_msgs/Point2 position\n"
                                       "float64 diameter\nfloat64 thickness\nfoxglove_msgs/Color fill_color\n"
                                       "foxglove_msgs/Color outline_color\n"),
    "foxglove_msgs/PointsAnnotation": ("builtin_interfaces/Time timestamp\nuint8 UNKNOWN=0\nuint8 POINTS=1\n"
                                       "uint8 LINE_LOOP=2\nuint8 LINE_STRIP=3\nuint8 LINE_LIST=4\nuint8 type\n"
                                       "foxglove_msgs/Point2[] points\nfoxglove_msgs/Color outline_color\n"
                                       "foxglove_msgs/Color[] outline_colors\nfoxglove_msgs/Color fill_color\n"
                                       "float64 thickness\n"),
    "foxglove_msgs/TextAnnotation": ("builtin_interfaces/Time timestamp\nfoxglove_msgs/Point2 position\nstring text\n"
                                     "float64 font_size\nfoxglove_msgs/Color text_color\n"
                                     "foxglove_msgs/Color background_color\n"),
    "foxglove_msgs/ImageAnnotations": ("foxglove_msgs/CircleAnnotation[] circles\n"
                                       "foxglove_msgs/PointsAnnotation[] points\n"
                                       "foxglove_msgs/TextAnnotation[] texts\n"),
}

COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE = "sensor_msgs/msg/Image"
DETECTION_ARRAY = "vision_msgs/msg/Detection2DArray"
IMAGE_ANNOTATIONS = "foxglove_msgs/msg/ImageAnnotations"
_SEPARATOR = "=" * 80


def _short(typename: str) -> str:
    return typename.replace("/msg/", "/")


def _used_types(typename: str) -> list[str]:
    """The message types ``typename``'s fields name, in order (``pkg/Type``, arrays included)."""
    return re.findall(r"^([a-z_]+/[A-Za-z0-9]+)(?:\[\d*\])? ", _DEFINITIONS[typename], re.M)


def schema(typename: str) -> str:
    """The concatenated ``ros2msg`` definition of ``typename`` (``pkg/msg/Type``) and its dependencies."""
    order, stack = [], [_short(typename)]
    while stack:
        name = stack.pop(0)
        if name not in order:
            order.append(name)
            stack.extend(_used_types(name))
    parts = [_DEFINITIONS[order[0]]] + [f"{_SEPARATOR}\nMSG: {name}\n{_DEFINITIONS[name]}" for name in order[1:]]
    return "".join(parts)
