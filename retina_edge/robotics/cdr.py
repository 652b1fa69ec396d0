"""ROS 2 CDR (XCDR1, little endian) for the messages retina-edge writes and reads (no ROS needed).

Encoders take the plain structures of :mod:`retina_edge.robotics.messages` (dicts named as the
``.msg`` fields) and return the serialized message, 4-byte encapsulation header included: what
``rclpy`` publishes for a ``bytes`` message and what an MCAP ``cdr`` channel holds. Decoders read
``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage``, what the ROS 2 node subscribes to.
Alignment follows the CDR rule: a primitive of size n starts at a multiple of n counted from the
end of the encapsulation header.
"""

from __future__ import annotations

import struct

from retina_edge.errors import DataError

#: CDR_LE: plain CDR, little endian (what ROS 2's default middlewares write).
ENCAPSULATION = b"\x00\x01\x00\x00"


class CdrWriter:
    """Appends CDR primitives to a buffer, aligning each to its size."""

    def __init__(self) -> None:
        self._buffer = bytearray(ENCAPSULATION)

    def _align(self, size: int) -> None:
        self._buffer += b"\x00" * (-(len(self._buffer) - 4) % size)

    def pack(self, fmt: str, *values) -> None:  # noqa: ANN002
        """Primitives of one size (``fmt``: struct codes of that size, e.g. ``"dddd"``)."""
        self._align(struct.calcsize("<" + fmt[0]))
        self._buffer += struct.pack("<" + fmt, *values)

    def uint32(self, value: int) -> None:
        self.pack("I", value)

    def string(self, text: str) -> None:
        data = text.encode("utf-8")
        self.uint32(len(data) + 1)
        self._buffer += data + b"\x00"

    def octets(self, data: bytes) -> None:
        """A ``uint8[]`` sequence."""
        self.uint32(len(data))
        self._buffer += data

    def getvalue(self) -> bytes:
        return bytes(self._buffer)


class CdrReader:
    """Reads CDR primitives from a serialized message (encapsulation header included)."""

    def __init__(self, data: bytes | memoryview) -> None:
        self._data = memoryview(data)
        if len(self._data) < 4 or self._data[1] not in (0, 1):
            raise DataError("not a CDR message (bad encapsulation header)")
        self._little = self._data[1] == 1
        self._offset = 4

    def unpack(self, fmt: str) -> tuple:
        code = ("<" if self._little else ">") + fmt
        size = struct.calcsize(code[:2])
        self._offset += -(self._offset - 4) % size
        values = struct.unpack_from(code, self._data, self._offset)
        self._offset += struct.calcsize(code)
        return values

    def uint32(self) -> int:
        return self.unpack("I")[0]

    def octets(self) -> memoryview:
        count = self.uint32()
        if self._offset + count > len(self._data):
            raise DataError("truncated CDR message")
        view = self._data[self._offset : self._offset + count]
        self._offset += count
        return view

    def string(self) -> str:
        return bytes(self.octets()).rstrip(b"\x00").decode("utf-8")


def _header(out: CdrWriter, header: dict) -> None:
    out.pack("iI", header["stamp"]["sec"], header["stamp"]["nanosec"])
    out.string(header["frame_id"])


def _detection(out: CdrWriter, detection: dict) -> None:
    _header(out, detection["header"])
    out.uint32(len(detection["results"]))
    for result in detection["results"]:
        out.string(result["hypothesis"]["class_id"])
        out.pack("d", result["hypothesis"]["score"])
        pose = result["pose"]["pose"]
        out.pack("ddddddd", *(pose["position"][k] for k in "xyz"), *(pose["orientation"][k] for k in "xyzw"))
        out.pack("d" * 36, *result["pose"]["covariance"])
    box = detection["bbox"]
    out.pack("ddddd", box["center"]["position"]["x"], box["center"]["position"]["y"], box["center"]["theta"],
             box["size_x"], box["size_y"])
    out.string(detection["id"])


def encode_detection_array(message: dict) -> bytes:
    """``vision_msgs/msg/Detection2DArray`` (vision_msgs 4.x: Humble, Jazzy) -> CDR."""
    out = CdrWriter()
    _header(out, message["header"])
    out.uint32(len(message["detections"]))
    for detection in message["detections"]:
        _detection(out, detection)
    return out.getvalue()


def encode_compressed_image(message: dict) -> bytes:
    """``sensor_msgs/msg/CompressedImage`` -> CDR."""
    out = CdrWriter()
    _header(out, message["header"])
    out.string(message["format"])
    out.octets(message["data"])
    return out.getvalue()


def _color(out: CdrWriter, color: dict) -> None:
    out.pack("dddd", color["r"], color["g"], color["b"], color["a"])


def encode_image_annotations(message: dict) -> bytes:
    """``foxglove_msgs/msg/ImageAnnotations`` (foxglove_msgs 3.x) -> CDR."""
    out = CdrWriter()
    out.uint32(len(message["circles"]))
    for circle in message["circles"]:
        out.pack("iI", circle["timestamp"]["sec"], circle["timestamp"]["nanosec"])
        out.pack("dddd", circle["position"]["x"], circle["position"]["y"], circle["diameter"], circle["thickness"])
        _color(out, circle["fill_color"])
        _color(out, circle["outline_color"])
    out.uint32(len(message["points"]))
    for points in message["points"]:
        out.pack("iI", points["timestamp"]["sec"], points["timestamp"]["nanosec"])
        out.pack("B", points["type"])
        out.uint32(len(points["points"]))
        for point in points["points"]:
            out.pack("dd", point["x"], point["y"])
        _color(out, points["outline_color"])
        out.uint32(len(points["outline_colors"]))
        for color in points["outline_colors"]:
            _color(out, color)
        _color(out, points["fill_color"])
        out.pack("d", points["thickness"])
    out.uint32(len(message["texts"]))
    for text in message["texts"]:
        out.pack("iI", text["timestamp"]["sec"], text["timestamp"]["nanosec"])
        out.pack("dd", text["position"]["x"], text["position"]["y"])
        out.string(text["text"])
        out.pack("d", text["font_size"])
        _color(out, text["text_color"])
        _color(out, text["background_color"])
    return out.getvalue()


def _read_header(reader: CdrReader) -> dict:
    sec, nanosec = reader.unpack("iI")
    return {"stamp": {"sec": sec, "nanosec": nanosec}, "frame_id": reader.string()}


def decode_image(data: bytes) -> dict:
    """``sensor_msgs/msg/Image`` CDR -> ``{"header", "height", "width", "encoding", "is_bigendian",
    "step", "data"}`` (``data`` a memoryview into ``data``, no copy)."""
    reader = CdrReader(data)
    header = _read_header(reader)
    height, width = reader.unpack("II")
    encoding = reader.string()
    is_bigendian = reader.unpack("B")[0]
    step = reader.uint32()
    return {"header": header, "height": height, "width": width, "encoding": encoding, "is_bigendian": is_bigendian,
            "step": step, "data": reader.octets()}


def decode_compressed_image(data: bytes) -> dict:
    """``sensor_msgs/msg/CompressedImage`` CDR -> ``{"header", "format", "data"}``."""
    reader = CdrReader(data)
    header = _read_header(reader)
    return {"header": header, "format": reader.string(), "data": reader.octets()}
