"""Robotics outputs of the runtime (no torch, no ROS install needed): ROS 2 messages, MCAP, Foxglove.

- :mod:`.messages`: :class:`~retina_edge.runtime.core.results.Detections` -> ``vision_msgs/Detection2DArray``
  and ``foxglove_msgs/ImageAnnotations`` as plain Python structures (dicts named as the ``.msg`` fields).
- :mod:`.cdr`: those structures -> ROS 2 CDR bytes, and ``sensor_msgs/Image``/``CompressedImage`` CDR
  -> RGB arrays (checked against ``rosbags`` and ``mcap-ros2-support`` in the tests).
- :mod:`.definitions`: the ``ros2msg`` schema texts, each with its dependencies.
- :mod:`.channels`: the topics of each source and a processed frame's messages on them.
- :mod:`.sinks`: ``write(result)`` / ``close()`` outputs for the pipeline's results: an MCAP
  recording (:mod:`.mcap_output`) and a live Foxglove WebSocket server (:mod:`.foxglove_output`).
- :mod:`.ros2_node`: a ROS 2 node (``retina-edge-ros2``); rclpy is imported only there.
"""
