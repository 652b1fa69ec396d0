"""Sketch: a ROS 2 node publishing retina-edge detections (rclpy is not installable in our CI, so
this file is an example, not part of the package or its tests).

    ros2 run <your_pkg> ros2_detector_node --ros-args -p model:=/models/synth-int8.engine

Subscribes to ``image`` (sensor_msgs/Image, rgb8 or bgr8) and publishes ``detections``
(vision_msgs/Detection2DArray). Inference runs off the executor thread through
``Pipeline.submit``; frames arriving while ``queue_size + 1`` are pending make ``submit`` wait,
which is what a robot wants: the newest frames, never a growing backlog.
"""

import numpy as np
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

from retina_edge.runtime.pipeline import Pipeline, PipelineConfig


class DetectorNode(Node):
    def __init__(self) -> None:
        super().__init__("retina_edge_detector")
        model = self.declare_parameter("model", "model.onnx").value
        self.pipeline = Pipeline(model, PipelineConfig(queue_size=1))  # opens and closes the Detector
        self.publisher = self.create_publisher(Detection2DArray, "detections", 10)
        self.create_subscription(Image, "image", self.on_image, 2)

    def on_image(self, msg: Image) -> None:
        frame = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.width, 3)
        if msg.encoding == "bgr8":
            frame = frame[:, :, ::-1]
        future = self.pipeline.submit(np.ascontiguousarray(frame))
        future.add_done_callback(lambda f, header=msg.header: self.publish(header, f.result()))

    def publish(self, header, detections) -> None:  # noqa: ANN001
        out = Detection2DArray(header=header)
        for det in detections:
            item = Detection2D(header=header)
            x1, y1, x2, y2 = det.box
            item.bbox.center.position.x, item.bbox.center.position.y = (x1 + x2) / 2, (y1 + y2) / 2
            item.bbox.size_x, item.bbox.size_y = x2 - x1, y2 - y1
            hypothesis = ObjectHypothesisWithPose()
            hypothesis.hypothesis.class_id, hypothesis.hypothesis.score = det.name, det.score
            item.results.append(hypothesis)
            out.detections.append(item)
        self.publisher.publish(out)

    def destroy_node(self) -> None:
        self.pipeline.close()
        super().destroy_node()


def main() -> None:
    rclpy.init()
    node = DetectorNode()
    try:
        rclpy.spin(node)
    finally:
        node.destroy_node()
        rclpy.shutdown()


if __name__ == "__main__":
    main()
