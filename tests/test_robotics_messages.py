"""Detections -> ROS 2 messages, checked against two independent ROS 2 implementations.

Each random detection set goes through our conversion and CDR encoder, then through rosbags (types
registered from the upstream ``.msg`` texts) and mcap-ros2-support (types parsed from the schema text
we write into MCAP files): both must produce our bytes from our structures, and both must decode
our bytes back to fields equal to the detections they came from.
"""

from __future__ import annotations

import numpy as np
import pytest
from robotics_helpers import mcap_ros2_codec, plain, rosbags_store, to_rosbags

from retina_edge.robotics import cdr, messages, ros_images
from retina_edge.robotics.definitions import (COMPRESSED_IMAGE, DETECTION_ARRAY, IMAGE, IMAGE_ANNOTATIONS,
                                              schema)
from retina_edge.runtime.core.results import Detections

NAMES = ("person", "forklift", "pallet", "café sign", "")


@pytest.fixture(scope="module")
def store():
    return rosbags_store()


def random_case(rng: np.random.Generator):
    """A random detection set with a random header, track ids (or none) and class id kind."""
    count = int(rng.integers(0, 16))
    corners = rng.uniform(-50, 2000, size=(count, 2)).astype(np.float32)
    sizes = rng.uniform(0, 500, size=(count, 2)).astype(np.float32)
    classes = int(rng.integers(1, len(NAMES) + 1))
    detections = Detections(np.concatenate([corners, corners + sizes], axis=1).reshape(-1, 4),
                            rng.uniform(0, 1, count).astype(np.float32),
                            rng.integers(0, classes + 2, count).astype(np.int64),  # labels past the names too
                            NAMES[:classes], tuple(int(v) for v in rng.integers(1, 1000, classes)))
    track_ids = rng.integers(-1, int(rng.choice([5, 10**12])), count) if rng.random() < 0.5 else None
    header = messages.header({"sec": int(rng.integers(-2**31, 2**31)), "nanosec": int(rng.integers(0, 10**9))},
                             f"camera_{int(rng.integers(0, 100))}")
    return detections, header, track_ids, str(rng.choice(messages.CLASS_ID_KINDS))


def check_detection_array(decoded: dict, detections: Detections, header: dict, track_ids, class_id: str) -> None:  # noqa: ANN001
    """The decoded message's fields against the detections, as vision_msgs defines them."""
    assert decoded["header"] == header and len(decoded["detections"]) == len(detections)
    for i, item in enumerate(decoded["detections"]):
        x1, y1, x2, y2 = (float(v) for v in detections.boxes[i])
        label = int(detections.labels[i])
        assert item["header"] == header
        assert item["bbox"] == {"center": {"position": {"x": (x1 + x2) / 2, "y": (y1 + y2) / 2}, "theta": 0.0},
                                "size_x": x2 - x1, "size_y": y2 - y1}
        expected_class = (detections.name(label) if class_id == "name" else
                          str(detections.category_ids[label]) if label < len(detections.category_ids) else str(label))
        [result] = item["results"]
        assert result["hypothesis"] == {"class_id": expected_class, "score": float(detections.scores[i])}
        assert result["pose"]["pose"]["orientation"] == {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}
        assert result["pose"]["covariance"] == [0.0] * 36
        track = None if track_ids is None else int(track_ids[i])
        assert item["id"] == ("" if track is None or track < 0 else str(track))


def check_annotations(decoded: dict, detections: Detections, time: dict) -> None:
    assert decoded["circles"] == [] and len(decoded["points"]) == len(decoded["texts"]) == len(detections)
    for i, (outline, text) in enumerate(zip(decoded["points"], decoded["texts"])):
        x1, y1, x2, y2 = (float(v) for v in detections.boxes[i])
        assert outline["type"] == 2 and outline["timestamp"] == time == text["timestamp"]  # LINE_LOOP
        assert outline["points"] == [{"x": x1, "y": y1}, {"x": x2, "y": y1}, {"x": x2, "y": y2}, {"x": x1, "y": y2}]
        assert text["text"].startswith(detections.name(int(detections.labels[i])))


def test_1000_random_detection_sets_round_trip_through_rosbags_and_mcap_ros2(store):
    rng = np.random.default_rng(29)
    codecs = {name: mcap_ros2_codec(name, schema(name)) for name in (DETECTION_ARRAY, IMAGE_ANNOTATIONS)}
    checked = 0
    for _ in range(1000):
        detections, header, track_ids, class_id = random_case(rng)
        structures = {
            DETECTION_ARRAY: messages.detection_array(detections, header, track_ids=track_ids, class_id=class_id),
            IMAGE_ANNOTATIONS: messages.image_annotations(detections, header["stamp"], track_ids=track_ids)}
        ours = {DETECTION_ARRAY: cdr.encode_detection_array(structures[DETECTION_ARRAY]),
                IMAGE_ANNOTATIONS: cdr.encode_image_annotations(structures[IMAGE_ANNOTATIONS])}
        for name, data in ours.items():
            encode, decode = codecs[name]
            assert store.serialize_cdr(to_rosbags(store, name, structures[name]), name) == data
            assert encode(structures[name]) == data
            for decoded in (plain(store.deserialize_cdr(data, name)), plain(decode(data))):
                if name == DETECTION_ARRAY:
                    check_detection_array(decoded, detections, header, track_ids, class_id)
                else:
                    check_annotations(decoded, detections, header["stamp"])
        checked += 1
    assert checked == 1000


def test_compressed_image_round_trip(store):
    header = messages.header(messages.stamp(1_700_000_000.123456789), "camera_3")
    structure = messages.compressed_image(bytes(range(256)) * 3, header)
    data = cdr.encode_compressed_image(structure)
    assert store.serialize_cdr(to_rosbags(store, COMPRESSED_IMAGE, structure), COMPRESSED_IMAGE) == data
    _, decode = mcap_ros2_codec(COMPRESSED_IMAGE, schema(COMPRESSED_IMAGE))
    assert plain(store.deserialize_cdr(data, COMPRESSED_IMAGE)) == structure == plain(decode(data))
    assert cdr.decode_compressed_image(data)["header"] == header


def test_stamps_keep_the_nanoseconds():
    assert messages.stamp(1_700_000_000.5) == {"sec": 1_700_000_000, "nanosec": 500_000_000}
    assert messages.stamp_ns(messages.stamp(1_700_000_000.25)) == 1_700_000_000_250_000_000
    assert messages.stamp_of_ns(-1) == {"sec": -1, "nanosec": 999_999_999}  # ROS 2 Time: nanosec in [0, 1e9)


@pytest.mark.parametrize("encoding, channels", [("rgb8", 3), ("bgr8", 3), ("rgba8", 4), ("bgra8", 4), ("mono8", 1)])
def test_images_from_rosbags_decode_to_rgb(store, encoding, channels):
    """sensor_msgs/Image serialized by rosbags (rows padded by 5 bytes) -> our RGB array."""
    rng = np.random.default_rng(channels)
    rgb = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    pixels = {"rgb8": rgb, "bgr8": rgb[:, :, ::-1], "rgba8": np.dstack([rgb, rgb[:, :, :1]]),
              "bgra8": np.dstack([rgb[:, :, ::-1], rgb[:, :, :1]]), "mono8": rgb[:, :, :1]}[encoding]
    step = 9 * channels + 5
    rows = np.zeros((7, step), dtype=np.uint8)
    rows[:, : 9 * channels] = pixels.reshape(7, -1)
    header = messages.header({"sec": 12, "nanosec": 34}, "cam")
    message = {"header": header, "height": 7, "width": 9, "encoding": encoding, "is_bigendian": 0, "step": step,
               "data": rows.tobytes()}
    data = store.serialize_cdr(to_rosbags(store, IMAGE, message), IMAGE)
    decoded_header, image = ros_images.decode(data, compressed=False)
    assert decoded_header == header
    np.testing.assert_array_equal(image, rgb if encoding != "mono8" else np.repeat(rgb[:, :, :1], 3, axis=2))


def test_compressed_png_from_rosbags_decodes_exactly(store):
    from retina_edge.imageio import encode_image_rgb

    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    message = {"header": messages.header({"sec": 1, "nanosec": 2}, "c"), "format": "png",
               "data": encode_image_rgb(rgb, ".png")}
    data = store.serialize_cdr(to_rosbags(store, COMPRESSED_IMAGE, message), COMPRESSED_IMAGE)
    np.testing.assert_array_equal(ros_images.decode(data, compressed=True)[1], rgb)


def test_unsupported_image_encoding_is_a_data_error(store):
    from retina_edge.errors import DataError

    message = {"header": messages.header({"sec": 0, "nanosec": 0}, ""), "height": 1, "width": 1, "encoding": "16UC1",
               "is_bigendian": 0, "step": 2, "data": b"\x00\x00"}
    with pytest.raises(DataError, match="16UC1"):
        ros_images.decode(store.serialize_cdr(to_rosbags(store, IMAGE, message), IMAGE), compressed=False)


@pytest.mark.parametrize("name", [COMPRESSED_IMAGE, IMAGE, DETECTION_ARRAY, IMAGE_ANNOTATIONS])
def test_schema_texts_define_the_upstream_fields(store, name):
    """Our concatenated schema, parsed by rosbags, gives every type the fields rosbags knows for it
    (built-in sensor/std/geometry msgs, upstream vision_msgs and foxglove_msgs texts)."""
    from rosbags.typesys import get_types_from_msg

    text = schema(name)
    parts = [(name, text.split("\n" + "=" * 80 + "\n")[0])]
    for block in text.split("=" * 80 + "\n")[1:]:
        header, _, body = block.partition("\n")
        package, type_name = header.removeprefix("MSG: ").split("/")
        parts.append((f"{package}/msg/{type_name}", body))
    for typename, body in parts:
        ours = get_types_from_msg(body, typename)[typename]
        assert ours == store.fielddefs[typename], typename
