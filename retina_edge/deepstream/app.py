"""A deepstream-app config: N sources batched by nvstreammux, the nvinfer config as primary GIE, the
NvDCF tracker (IDs per source), tiled display and a sink.

Keys: ``deepstream_config_file_parser.{c,h}`` (apps-common) and ``deepstream_app_config_parser.c``
of the DeepStream sources; layout after NVIDIA's ``source4_1080p_dec_infer-resnet_tracker_...``
sample. The sink is a fakesink (works headless and on modules without an encoder); ``type=2``
shows the tiled view on a display.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from retina_edge.deepstream.nvinfer import Section
from retina_edge.errors import RetinaEdgeError

DS_ROOT = "/opt/nvidia/deepstream/deepstream"
SAMPLE_STREAM = f"file://{DS_ROOT}/samples/streams/sample_1080p_h264.mp4"
TRACKER_LIB = f"{DS_ROOT}/lib/libnvds_nvmultiobjecttracker.so"
TRACKER_CONFIG = f"{DS_ROOT}/samples/configs/deepstream-app/config_tracker_NvDCF_perf.yml"


def check_uri(uri: str) -> None:
    """Raise unless ``uri`` is one a URI source (uridecodebin) can open: ``scheme://...`` without spaces
    or control characters (a line break would also end the config's ``uri=`` row)."""
    from urllib.parse import urlsplit

    scheme = urlsplit(uri).scheme
    if not scheme or "://" not in uri or any(c.isspace() or ord(c) < 32 for c in uri):
        raise RetinaEdgeError(f"{uri!r} is not a URI DeepStream can open: give one such as "
                              "file:///videos/front.mp4 or rtsp://camera/stream (spaces written as %20)", option="uris")


@dataclass(frozen=True)
class AppSettings:
    """``uris``: one per source (file://, rtsp://, ...); ``batch_size``: nvstreammux and primary GIE
    batch; ``infer_config``: the nvinfer config file, relative to this one."""

    uris: tuple[str, ...]
    batch_size: int
    infer_config: str = "config_infer_primary.txt"
    gie_unique_id: int = 1
    gpu_id: int = 0
    mux_size: tuple[int, int] = (1920, 1080)


def app_sections(settings: AppSettings) -> dict[str, Section]:
    """The deepstream-app config as (section -> rows)."""
    count = len(settings.uris)
    columns = math.ceil(math.sqrt(count))
    width, height = settings.mux_size
    live = int(any(not uri.startswith("file://") for uri in settings.uris))
    sections: dict[str, Section] = {
        "application": [("enable-perf-measurement", 1, "frames per second of each source, every 5 s"),
                        ("perf-measurement-interval-sec", 5, "")],
        "tiled-display": [("enable", 1, ""), ("rows", math.ceil(count / columns), ""), ("columns", columns, ""),
                          ("width", 1280, ""), ("height", 720, ""), ("gpu-id", settings.gpu_id, "")],
    }
    for index, uri in enumerate(settings.uris):
        sections[f"source{index}"] = [("enable", 1, ""), ("type", 3, "3 URI (file, RTSP, HTTP)"), ("uri", uri, ""),
                                      ("num-sources", 1, ""), ("gpu-id", settings.gpu_id, "")]
    sections["streammux"] = [("gpu-id", settings.gpu_id, ""), ("live-source", live, ""),
                             ("batch-size", settings.batch_size, ""), ("batched-push-timeout", 40000, ""),
                             ("width", width, ""), ("height", height, ""), ("enable-padding", 0, "")]
    sections["primary-gie"] = [("enable", 1, ""), ("gpu-id", settings.gpu_id, ""), ("batch-size", settings.batch_size, ""),
                               ("gie-unique-id", settings.gie_unique_id, ""), ("interval", 0, ""),
                               ("config-file", settings.infer_config, "")]
    sections["tracker"] = [("enable", 1, "NvDCF: a track ID per object and source"), ("tracker-width", 640, ""),
                           ("tracker-height", 384, ""), ("ll-lib-file", TRACKER_LIB, ""),
                           ("ll-config-file", TRACKER_CONFIG, ""), ("gpu-id", settings.gpu_id, ""),
                           ("display-tracking-id", 1, "")]
    sections["osd"] = [("enable", 1, ""), ("gpu-id", settings.gpu_id, ""), ("border-width", 2, ""), ("text-size", 15, "")]
    sections["sink0"] = [("enable", 1, ""), ("type", 1, "1 fakesink; 2 shows the tiled view on a display"),
                         ("sync", 0, ""), ("gpu-id", settings.gpu_id, "")]
    return sections
