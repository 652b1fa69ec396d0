"""A ROS 2 node: camera images in, ``vision_msgs/Detection2DArray`` out (``retina-edge-ros2``).

    ros2 run ... or: retina-edge-ros2 --ros-args -p model:=/models/synth-int8.engine \\
        -p image_topics:="['/front/image_raw', '/rear/image/compressed']" -p tracking:=true

Subscribes to each of ``image_topics`` (``sensor_msgs/Image``, or ``sensor_msgs/CompressedImage`` for
a topic ending in ``/compressed``) with sensor QoS (best effort, keep last, depth 1) and publishes one
``Detection2DArray`` per image on the topic's detections topic (``/front/image_raw`` ->
``/front/detections``; or ``detection_topics``), with the image's header (stamp and frame_id) and
the fields :mod:`retina_edge.robotics.messages` describes.

Never a backlog: each topic has one slot holding its newest image not yet detected; an image
arriving while the slot is full replaces it and counts as skipped (reported in the log every
``skip_log_period`` seconds). An inference thread takes the images of every topic waiting at that
moment and detects them in one ``Detector`` call (one batch across cameras), then publishes.
Messages travel as serialized CDR (``raw`` subscriptions, ``bytes`` publishing, both in rclpy since
Humble), decoded and encoded by :mod:`retina_edge.robotics.cdr`.

Parameters: ``model`` (path, required), ``backend`` (auto, onnxruntime, openvino, tensorrt),
``device``, ``score_threshold`` (negative: the model's), ``classes`` (comma-separated names or
category ids; empty: all), ``tracking`` (track IDs in ``Detection2D.id``), ``class_id`` (``name`` or
``category_id``: what ``ObjectHypothesis.class_id`` holds), ``image_topics``, ``detection_topics``,
``tracker`` (the motion tracker's name, as ``detect --tracker``; empty: the runtime's default) and
``fixed_camera`` (true: no camera-motion compensation, for cameras that never move).

rclpy, ``sensor_msgs`` and ``vision_msgs`` come from the ROS 2 install (source its setup script);
they are imported only in this module.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from retina_edge.errors import DataError, RetinaEdgeError
from retina_edge.robotics import cdr, messages, ros_images

NODE_NAME = "retina_edge_detector"


@dataclass(frozen=True)
class NodeSettings:
    """The node's parameters (see the module docstring)."""

    model: str
    backend: str = "auto"
    device: str = ""
    score_threshold: float = -1.0
    classes: str = ""
    tracking: bool = False
    tracker: str = ""
    fixed_camera: bool = False
    class_id: str = "name"
    image_topics: tuple[str, ...] = ("image",)
    detection_topics: tuple[str, ...] = ()
    skip_log_period: float = 5.0

    def __post_init__(self) -> None:
        if self.class_id not in messages.CLASS_ID_KINDS:
            raise RetinaEdgeError(f"unknown class_id {self.class_id!r}; expected one of {messages.CLASS_ID_KINDS}")
        if not self.image_topics:
            raise RetinaEdgeError("image_topics is empty: name at least one camera topic")

    def outputs(self) -> list[str]:
        """The detections topic of each image topic."""
        outputs = list(self.detection_topics) or [detections_topic(topic) for topic in self.image_topics]
        if len(outputs) != len(self.image_topics):
            raise RetinaEdgeError(f"{len(self.image_topics)} image topics but {len(outputs)} detection topics")
        if len(set(outputs)) != len(outputs):
            raise RetinaEdgeError(f"two image topics would publish on the same detections topic: {outputs}; "
                                  "name them with detection_topics")
        return outputs


def detections_topic(image_topic: str) -> str:
    """``/ns/image_raw`` and ``/ns/image_raw/compressed`` -> ``/ns/detections``; ``image`` -> ``detections``."""
    base = image_topic.removesuffix("/compressed")
    namespace = base.rsplit("/", 1)[0] if "/" in base else ""
    return f"{namespace}/detections" if namespace or base.startswith("/") else "detections"


def read_settings(node) -> NodeSettings:  # noqa: ANN001
    """Declare the node's parameters (defaults from :class:`NodeSettings`) and read their values."""
    defaults = NodeSettings(model="")
    values = {name: node.declare_parameter(name, default).value for name, default in (
        ("model", ""), ("backend", defaults.backend), ("device", defaults.device),
        ("score_threshold", defaults.score_threshold), ("classes", defaults.classes), ("tracking", defaults.tracking),
        ("tracker", defaults.tracker), ("fixed_camera", defaults.fixed_camera), ("class_id", defaults.class_id),
        ("image_topics", list(defaults.image_topics)), ("detection_topics", [""]), ("skip_log_period", defaults.skip_log_period))}
    if not values["model"]:
        raise RetinaEdgeError("the model parameter is required: --ros-args -p model:=/path/to/model.onnx")
    values["image_topics"] = tuple(values["image_topics"])
    values["detection_topics"] = tuple(topic for topic in values["detection_topics"] if topic)
    return NodeSettings(**values)


class LatestImages:
    """One slot per topic with its newest image not yet taken; a replaced image counts as skipped."""

    def __init__(self, topics: int) -> None:
        self._slots: list[bytes | None] = [None] * topics
        self._ready = threading.Condition()
        #: Images replaced before detection, per topic.
        self.skipped = [0] * topics

    def put(self, topic: int, data: bytes) -> None:
        with self._ready:
            if self._slots[topic] is not None:
                self.skipped[topic] += 1
            self._slots[topic] = data
            self._ready.notify()

    def take(self, timeout: float) -> list[tuple[int, bytes]]:
        """Every waiting image as ``(topic, data)``, emptying the slots; [] after ``timeout`` s with none."""
        with self._ready:
            self._ready.wait_for(lambda: any(slot is not None for slot in self._slots), timeout)
            taken = [(topic, data) for topic, data in enumerate(self._slots) if data is not None]
            self._slots = [None] * len(self._slots)
            return taken


class DetectorNode:
    """The node's work on an rclpy ``node`` (see the module docstring). ``detector``: a
    :class:`~retina_edge.runtime.Detector` (None: opened from the parameters, and closed by
    :meth:`close`); ``tracker_factory``: makes one tracker per topic when tracking (None: the
    runtime's default tracker)."""

    def __init__(self, node, *, detector=None, tracker_factory: Callable | None = None) -> None:  # noqa: ANN001
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image
        from vision_msgs.msg import Detection2DArray

        self.node = node
        self.log = node.get_logger()
        self.settings = settings = read_settings(node)
        outputs = settings.outputs()
        self._owns_detector = detector is None
        self.detector = detector or self._open_detector()
        try:
            self.classes = self.detector.metadata.model.labels_for(_split(settings.classes)) if settings.classes else None
            factory = tracker_factory or (lambda: _default_tracker(settings))
            self.trackers = ([factory() for _ in settings.image_topics]
                             if settings.tracking else None)
        except BaseException:
            if self._owns_detector:
                self.detector.close()
            raise
        self.latest = LatestImages(len(settings.image_topics))
        sensor = QoSProfile(reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST, depth=1)
        self.compressed = [topic.endswith("/compressed") for topic in settings.image_topics]
        self.publishers = [node.create_publisher(Detection2DArray, topic, 10) for topic in outputs]
        self.subscriptions = [
            node.create_subscription(CompressedImage if compressed else Image, topic, self._receiver(index), sensor, raw=True)
            for index, (topic, compressed) in enumerate(zip(settings.image_topics, self.compressed))]
        #: Images detected and published, per topic.
        self.published = [0] * len(outputs)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._run, name="retina-edge-ros2-infer", daemon=True)
        self._worker.start()
        self.log.info(f"detecting {', '.join(settings.image_topics)} -> {', '.join(outputs)} with {settings.model}")

    def _open_detector(self):  # noqa: ANN202
        from retina_edge.runtime import BackendOptions, Detector

        settings = self.settings
        options = BackendOptions(device=settings.device or None)
        return Detector(settings.model, backend=settings.backend, options=options,
                        score_thresh=settings.score_threshold if settings.score_threshold >= 0 else None)

    def _receiver(self, topic: int) -> Callable[[bytes], None]:
        # Runs on the executor's thread: only hand the bytes over, never wait for inference.
        return lambda data: self.latest.put(topic, data)

    def _run(self) -> None:
        reported, last_report = 0, time.monotonic()
        while not self._stop.is_set():
            batch = self.latest.take(timeout=0.1)
            if batch:
                try:
                    self.process(batch)
                except Exception as error:  # noqa: BLE001 - one bad batch must not end the node
                    self.log.error(f"detection failed on {len(batch)} images: {error}")
            skipped = sum(self.latest.skipped)
            if skipped > reported and time.monotonic() - last_report >= self.settings.skip_log_period:
                per_topic = ", ".join(f"{topic}: {count}" for topic, count in zip(self.settings.image_topics,
                                                                                   self.latest.skipped))
                self.log.warning(f"skipped {skipped - reported} images that arrived while detection was busy "
                                 f"({skipped} in all; {per_topic}); only the newest image of each topic is detected")
                reported, last_report = skipped, time.monotonic()

    def process(self, batch: Sequence[tuple[int, bytes]]) -> None:
        """Decode, detect in one call, publish: ``batch`` holds ``(topic index, CDR bytes)``."""
        decoded = []
        for topic, data in batch:
            try:
                decoded.append((topic, *ros_images.decode(data, compressed=self.compressed[topic])))
            except DataError as error:
                self.log.warning(f"{self.settings.image_topics[topic]}: image skipped: {error}")
        if not decoded:
            return
        found = self.detector.detect([image for _, _, image in decoded])
        for (topic, header, image), detections in zip(decoded, found):
            if self.classes is not None:
                detections = detections.filter(classes=self.classes)
            track_ids = None
            if self.trackers is not None:
                track_ids = self.trackers[topic].update(detections, messages.stamp_ns(header["stamp"]) / 1e9, image)
            message = messages.detection_array(detections, header, track_ids=track_ids, class_id=self.settings.class_id)
            self.publishers[topic].publish(cdr.encode_detection_array(message))
            self.published[topic] += 1

    def close(self) -> None:
        """Stop the inference thread (and close the detector the node opened)."""
        self._stop.set()
        self._worker.join(timeout=10)
        if self._owns_detector:
            self.detector.close()


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _default_tracker(settings: NodeSettings):  # noqa: ANN202
    """The runtime's tracker named by ``settings`` (``update(detections, timestamp, image)`` -> IDs, -1
    while unconfirmed), with camera-motion compensation unless the camera is fixed and colour checks."""
    from retina_edge.runtime.video import tracking

    options = tracking.TrackerOptions(camera_motion=not settings.fixed_camera)
    return tracking.make_tracker(replace(options, tracker=settings.tracker) if settings.tracker else options)


USAGE = """usage: retina-edge-ros2 --ros-args -p model:=PATH [-p NAME:=VALUE ...]

A ROS 2 node: camera images in, vision_msgs/Detection2DArray out, the cameras detected in one batch.

parameters:
  model             deployed model file (.onnx or .engine), required
  image_topics      topics to subscribe to, e.g. "['/front/image_raw', '/rear/image/compressed']"
                    (sensor_msgs/Image, or CompressedImage for a topic ending in /compressed)
  detection_topics  where to publish (default: /front/image_raw -> /front/detections)
  backend, device   auto, onnxruntime, openvino, tensorrt; the backend's device
  score_threshold   negative: the model's
  classes           comma-separated names or category ids (empty: all)
  tracking          true: track IDs in Detection2D.id
  tracker           the motion tracker, as detect --tracker (empty: the runtime's default)
  fixed_camera      true: no camera-motion compensation, for cameras that never move
  class_id          name or category_id: what ObjectHypothesis.class_id holds
  skip_log_period   seconds between log lines counting the images skipped (default 5)

It runs in a ROS 2 environment (Humble or newer, with vision_msgs): source /opt/ros/<distro>/setup.bash.
example:
  retina-edge-ros2 --ros-args -p model:=/models/m.engine -p image_topics:="['/front/image_raw']" -p tracking:=true
"""


def main(args: Sequence[str] | None = None) -> int:
    """``retina-edge-ros2``: run the node until Ctrl-C or a ROS shutdown (``--help``: the usage, without ROS 2)."""
    given = list(sys.argv[1:] if args is None else args)
    if given[:1] in (["-h"], ["--help"]):
        print(USAGE, end="")
        return 0
    try:
        import rclpy
        from rclpy.executors import ExternalShutdownException
        from rclpy.node import Node
    except ModuleNotFoundError as error:
        print(f"retina-edge-ros2: {error.name} is missing: the node runs in a ROS 2 environment (Humble or newer, "
              "with vision_msgs): source /opt/ros/<distro>/setup.bash first", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - a broken install (a missing librcl, another Python's build): one line
        print(f"retina-edge-ros2: rclpy is installed but cannot be imported ({type(error).__name__}: "
              f"{str(error).splitlines()[0] if str(error) else 'no details'}): source the setup script of a ROS 2 "
              "built for this Python", file=sys.stderr)
        return 2

    rclpy.init(args=args)
    node = Node(NODE_NAME)
    detector = None
    try:
        detector = DetectorNode(node)
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RetinaEdgeError as error:
        node.get_logger().error(str(error))
        return 2
    finally:
        if detector is not None:
            detector.close()
            node.get_logger().info(f"published {sum(detector.published)} detection arrays, skipped "
                                   f"{sum(detector.latest.skipped)} images")
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
