"""The ROS 2 node's wiring, run against the rclpy stand-in (tests/ros2_standin.py; rclpy itself cannot
be installed here). Images go in as CDR that rosbags serialized; what the node publishes is decoded
by rosbags with the upstream vision_msgs definitions."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest
import ros2_standin
from robotics_helpers import export_synth_model, plain, rosbags_store, to_rosbags
from test_robotics_messages import check_detection_array

from retina_edge.data.synth_video import SyntheticVideo
from retina_edge.imageio import encode_image_rgb
from retina_edge.robotics.definitions import COMPRESSED_IMAGE, DETECTION_ARRAY, IMAGE
from retina_edge.robotics.messages import header
from retina_edge.robotics.ros2_node import detections_topic, read_settings
from retina_edge.runtime import Detector
from retina_edge.runtime.core.results import Detections


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return export_synth_model(tmp_path_factory.mktemp("ros2"))


@pytest.fixture(scope="module")
def store():
    return rosbags_store()


def image_message(store, image: np.ndarray, stamp_sec: int, frame: str, *, compressed: bool) -> bytes:  # noqa: ANN001
    """A camera's message as rosbags serializes it: bgr8 Image, or PNG CompressedImage."""
    message_header = header({"sec": stamp_sec, "nanosec": 5}, frame)
    if compressed:
        message = {"header": message_header, "format": "png", "data": encode_image_rgb(image, ".png")}
        return store.serialize_cdr(to_rosbags(store, COMPRESSED_IMAGE, message), COMPRESSED_IMAGE)
    height, width, _ = image.shape
    message = {"header": message_header, "height": height, "width": width, "encoding": "bgr8", "is_bigendian": 0,
               "step": width * 3, "data": np.ascontiguousarray(image[:, :, ::-1]).tobytes()}
    return store.serialize_cdr(to_rosbags(store, IMAGE, message), IMAGE)


def ros_args(**parameters) -> list[str]:
    args = ["--ros-args"]
    for name, value in parameters.items():
        args += ["-p", f"{name}:={value}"]
    return args


def test_detections_topic_names():
    assert detections_topic("/front/image_raw") == "/front/detections"
    assert detections_topic("/front/image_raw/compressed") == "/front/detections"
    assert detections_topic("image") == "detections"
    assert detections_topic("/image") == "/detections"


def test_main_detects_two_camera_topics_and_publishes_with_their_headers(model, store, monkeypatch):
    from retina_edge.robotics import ros2_node

    ros = ros2_standin.install(monkeypatch)
    images = {"/front/image_raw": SyntheticVideo(seed=3).frame(0), "/rear/image/compressed": SyntheticVideo(seed=4).frame(2)}
    published = {}

    def scenario(node):  # noqa: ANN001
        for sec, (topic, image) in enumerate(images.items()):
            node.subscriptions[topic].deliver(image_message(store, image, 100 + sec, f"cam{sec}",
                                                            compressed=topic.endswith("/compressed")))
        for topic in ("/front/detections", "/rear/detections"):
            published[topic] = node.publishers[topic].wait_for(1)

    ros.on_spin = scenario
    code = ros2_node.main(ros_args(model=model, backend="onnxruntime", score_threshold=0.3, classes="ellipse,star,4",
                                   image_topics="['/front/image_raw', '/rear/image/compressed']"))
    assert code == 0 and ros.spun and not ros.initialized
    [node] = ros.nodes
    assert node.destroyed
    for subscription in node.subscriptions.values():
        qos = subscription.qos_profile
        assert subscription.raw and (qos.reliability, qos.history, qos.depth) == (
            ros2_standin.ReliabilityPolicy.BEST_EFFORT, ros2_standin.HistoryPolicy.KEEP_LAST, 1)
    assert node.subscriptions["/front/image_raw"].msg_type.__name__ == "Image"
    assert node.subscriptions["/rear/image/compressed"].msg_type.__name__ == "CompressedImage"
    assert {p.msg_type.__name__ for p in node.publishers.values()} == {"Detection2DArray"}
    with Detector(model, backend="onnxruntime", score_thresh=0.3) as detector:
        labels = detector.metadata.model.labels_for(["ellipse", "star", "4"])
        for sec, (topic, image) in enumerate(images.items()):
            expected = detector.detect([image])[0].filter(classes=labels)
            [data] = published[detections_topic(topic)]
            decoded = plain(store.deserialize_cdr(data, DETECTION_ARRAY))
            assert len(expected) > 0
            check_detection_array(decoded, expected, header({"sec": 100 + sec, "nanosec": 5}, f"cam{sec}"), None, "name")
    assert any("published 2 detection arrays, skipped 0 images" in message for _, message in ros.log)


class GatedDetector:
    """Returns two fixed boxes per image; its first call waits for ``gate``; records batch sizes."""

    def __init__(self) -> None:
        self.gate, self.entered, self.batches = threading.Event(), threading.Event(), []

    def detect(self, images):  # noqa: ANN001, ANN201
        self.entered.set()
        assert self.gate.wait(30)
        self.batches.append(len(images))
        boxes = np.array([[1, 2, 30, 40], [5, 5, 9, 9]], dtype=np.float32)
        return [Detections(boxes, np.array([0.9, 0.5], np.float32), np.array([0, 1]), ("a", "b"), (11, 12))
                for _ in images]


def test_images_arriving_while_detecting_are_skipped_and_topics_batched(store, monkeypatch):
    from retina_edge.robotics.ros2_node import DetectorNode

    ros = ros2_standin.install(monkeypatch)
    ros.init(args=ros_args(model="unused.onnx", skip_log_period=0.0, tracking=True, class_id="category_id",
                           image_topics="['/a/image', '/b/image']"))
    node = ros2_standin.Node("retina_edge_detector")
    detector = GatedDetector()
    tracked = iter([np.array([7, -1]), np.array([8, 9]), np.array([10, 11])])
    worker = DetectorNode(node, detector=detector, tracker_factory=lambda: type("T", (), {
        "update": lambda self, detections, timestamp, image: next(tracked)})())
    image = SyntheticVideo(seed=5).frame(0)
    a, b = node.subscriptions["/a/image"], node.subscriptions["/b/image"]
    try:
        a.deliver(image_message(store, image, 1, "a", compressed=False))
        assert detector.entered.wait(30)  # the first image is in detection: the next ones wait in the slots
        for sec in range(2, 6):
            a.deliver(image_message(store, image, sec, "a", compressed=False))
        b.deliver(image_message(store, image, 50, "b", compressed=False))
        detector.gate.set()
        sent_a = node.publishers["/a/detections"].wait_for(2)
        sent_b = node.publishers["/b/detections"].wait_for(1)
    finally:
        worker.close()
    assert detector.batches == [1, 2]  # the waiting images of both topics went through one call
    assert worker.latest.skipped == [3, 0] and worker.published == [2, 1]
    stamps = [plain(store.deserialize_cdr(data, DETECTION_ARRAY))["header"]["stamp"]["sec"] for data in sent_a]
    assert stamps == [1, 5]  # the newest image waiting was detected; 2, 3 and 4 were skipped
    ids = [[d["id"] for d in plain(store.deserialize_cdr(data, DETECTION_ARRAY))["detections"]]
           for data in sent_a + sent_b]
    assert ids[0] == ["7", ""] and sorted(ids[1:]) == [["10", "11"], ["8", "9"]]
    first = plain(store.deserialize_cdr(sent_a[0], DETECTION_ARRAY))["detections"][0]["results"][0]["hypothesis"]
    assert first["class_id"] == "11"  # class_id: category_id
    assert any(level == "warning" and "skipped 3 images" in message for level, message in ros.log)


def test_bad_parameters_end_main_with_an_error(monkeypatch):
    from retina_edge.robotics import ros2_node

    ros = ros2_standin.install(monkeypatch)
    assert ros2_node.main(ros_args(backend="onnxruntime")) == 2
    assert ("error", "the model parameter is required: --ros-args -p model:=/path/to/model.onnx") in ros.log
    assert ros.nodes[0].destroyed and not ros.initialized


def test_an_undecodable_image_is_logged_and_skipped(store, monkeypatch):
    from retina_edge.robotics.ros2_node import DetectorNode

    ros = ros2_standin.install(monkeypatch)
    ros.init(args=ros_args(model="unused.onnx"))
    node = ros2_standin.Node("retina_edge_detector")
    detector = GatedDetector()
    detector.gate.set()
    worker = DetectorNode(node, detector=detector)
    message = {"header": header({"sec": 1, "nanosec": 0}, "x"), "height": 1, "width": 1, "encoding": "16UC1",
               "is_bigendian": 0, "step": 2, "data": b"\x00\x00"}
    worker.process([(0, store.serialize_cdr(to_rosbags(store, IMAGE, message), IMAGE))])
    worker.close()
    assert detector.batches == [] and any("16UC1" in message for _, message in ros.log)


def test_the_node_module_needs_neither_rclpy_nor_torch_to_import_and_says_what_is_missing():
    import subprocess
    import sys

    code = ("import sys, retina_edge.robotics.ros2_node as n, retina_edge.robotics.sinks; "
            "assert not {'torch', 'rclpy'} & set(sys.modules); sys.exit(n.main([]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2 and "rclpy is missing" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("params", "tracker", "compensated"), [({}, None, True),
                                                                ({"tracker": "botsort", "fixed_camera": True}, "botsort", False)])
def test_tracker_and_fixed_camera_parameters_choose_each_topics_tracker(monkeypatch, params, tracker, compensated):
    from retina_edge.robotics.ros2_node import DetectorNode
    from retina_edge.runtime.video.tracking import TRACKERS, TrackerOptions

    ros = ros2_standin.install(monkeypatch)
    ros.init(args=ros_args(model="unused.onnx", tracking=True, image_topics="['/a/image', '/b/image']", **params))
    worker = DetectorNode(ros2_standin.Node("retina_edge_detector"), detector=GatedDetector())
    try:
        first, second = worker.trackers
        expected = TRACKERS.get(tracker or TrackerOptions().tracker).factory
        assert first is not second and type(first.motion) is expected
        assert (first.camera is not None) == compensated
    finally:
        worker.close()


def test_help_needs_no_ros_2_and_a_broken_rclpy_is_one_line(tmp_path):
    """--help printed "rclpy is missing"; an rclpy that fails to import (a missing librcl, another Python's
    build) gave a traceback."""
    import subprocess
    import sys

    shown = subprocess.run([sys.executable, "-c", "import sys, retina_edge.robotics.ros2_node as n; sys.exit(n.main())",
                            "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and shown.stdout.startswith("usage: retina-edge-ros2 --ros-args -p model:=PATH")
    assert shown.stderr == ""
    declared = []  # every parameter the node declares has its line (before: tracker and fixed_camera had none)
    read_settings(SimpleNamespace(declare_parameter=lambda name, default: declared.append(name) or SimpleNamespace(
        value="m.onnx" if name == "model" else default)))
    table = shown.stdout.split("parameters:\n")[1].split("\n\n")[0].splitlines()
    listed = {name for line in table for name in line[:20].strip().split(", ") if name}  # the names column
    assert {"tracker", "fixed_camera", "image_topics"} <= set(declared) and set(declared) == listed
    (tmp_path / "rclpy").mkdir()
    (tmp_path / "rclpy" / "__init__.py").write_text(
        "raise ImportError('librcl.so: cannot open shared object file: No such file or directory')")
    broken = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r}); "
                             "import retina_edge.robotics.ros2_node as n; sys.exit(n.main([]))"],
                            capture_output=True, text=True)
    assert broken.returncode == 2 and "Traceback" not in broken.stderr and broken.stderr.count("\n") == 1
    assert "rclpy is installed but cannot be imported (ImportError: librcl.so: cannot open" in broken.stderr
