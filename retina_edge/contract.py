"""The deployed model's I/O contract: tensor names, layouts and metadata keys (no torch).

Export writes it, the runtime reads it, tests check both against this one module.

Input ``images``: ``(B, 3, H, W)`` float32, RGB, letterboxed and normalised as the
``preprocess`` metadata says (:mod:`retina_edge.preprocess`).

Outputs by ``postprocess`` mode, boxes always x1y1x2y2 in network-input pixels:

- ``none``: ``cls_logits`` ``(B, N, K)`` raw logits and ``bbox_regression`` ``(B, N, 4)`` raw deltas,
  N = sum over P3..P7 of H_l * W_l * A, anchors in (level, y, x, anchor) order;
- ``decode``: ``boxes`` ``(B, M, 4)``, ``scores`` ``(B, M)`` sigmoid scores, ``labels`` ``(B, M)``
  int64: each level's top-k (anchor, class) pairs, decoded and clipped to the input, M = sum of
  the per-level k; entries may score below the threshold (the host filters, then runs NMS);
- ``nms``: ``num_detections`` ``(B, 1)`` int64, ``det_boxes`` ``(B, D, 4)``, ``det_scores``
  ``(B, D)``, ``det_labels`` ``(B, D)`` int64, D = ``detections_per_img``; rows past
  ``num_detections`` are padding (score 0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from retina_edge._version import __version__
from retina_edge.config import ModelConfig
from retina_edge.errors import RetinaEdgeError
from retina_edge.preprocess import PreprocessConfig

INPUT_NAME = "images"
OUTPUTS = {
    "none": ("cls_logits", "bbox_regression"),
    "decode": ("boxes", "scores", "labels"),
    "nms": ("num_detections", "det_boxes", "det_scores", "det_labels"),
}
POSTPROCESS_MODES = tuple(OUTPUTS)
#: Name prefixes of the network's nodes (backbone + FPN, heads) in every exported graph; the
#: exporter names nodes after modules. All other nodes form the post-network tail (decode, NMS).
NETWORK_SCOPES = ("/backbone/", "/head/")

FORMAT_VERSION = 1
KEY_PREFIX = "retina_edge."
KEY_FORMAT = KEY_PREFIX + "format_version"
KEY_MODEL = KEY_PREFIX + "model"
KEY_PREPROCESS = KEY_PREFIX + "preprocess"
KEY_POSTPROCESS = KEY_PREFIX + "postprocess"
KEY_PRECISION = KEY_PREFIX + "precision"
KEY_VERSION = KEY_PREFIX + "toolkit_version"
KEY_OUTPUTS = KEY_PREFIX + "outputs"
#: "MIN,OPT,MAX" batch range the graph (or engine profile) was built for.
KEY_BATCH = KEY_PREFIX + "batch"
# Plain keys for other tools (Netron, ONNX Runtime users) that do not parse our JSON.
KEY_NAMES = "names"
KEY_IMGSZ = "imgsz"


def check_batch_range(batch: tuple[int, int, int]) -> None:
    """Raise unless ``batch`` is a usable (min, opt, max) range: 1 <= min <= opt <= max."""
    low, opt, high = batch
    if not 1 <= low <= opt <= high:
        raise RetinaEdgeError(f"--batch needs 1 <= MIN <= OPT <= MAX, got {tuple(batch)}")


def format_batch(batch: tuple[int, int, int]) -> str:
    return ",".join(map(str, batch))


def max_batch(props: dict[str, str]) -> int:
    """Largest batch a graph or engine takes, from its :data:`KEY_BATCH` entry (1 if absent)."""
    return int(props.get(KEY_BATCH, "1,1,1").split(",")[2])


@dataclass(frozen=True)
class DeploymentMetadata:
    """Everything a runtime needs besides the graph: model config (classes, anchors, thresholds,
    arch), preprocessing, which postprocess the graph carries, and its precision."""

    model: ModelConfig
    preprocess: PreprocessConfig
    postprocess: str
    precision: str = "fp32"
    toolkit_version: str = __version__

    def __post_init__(self) -> None:
        if self.postprocess not in POSTPROCESS_MODES:
            raise RetinaEdgeError(f"unknown postprocess mode {self.postprocess!r}; expected one of {POSTPROCESS_MODES}")

    @property
    def output_names(self) -> tuple[str, ...]:
        return OUTPUTS[self.postprocess]

    def to_props(self) -> dict[str, str]:
        """String key/values for ONNX ``metadata_props`` (and engine sidecars)."""
        return {
            KEY_FORMAT: str(FORMAT_VERSION),
            KEY_MODEL: json.dumps(self.model.to_dict()),
            KEY_PREPROCESS: json.dumps(self.preprocess.to_dict()),
            KEY_POSTPROCESS: self.postprocess,
            KEY_PRECISION: self.precision,
            KEY_VERSION: self.toolkit_version,
            KEY_OUTPUTS: json.dumps(list(self.output_names)),
            KEY_NAMES: json.dumps(dict(enumerate(self.model.class_names))),
            KEY_IMGSZ: json.dumps([self.preprocess.height, self.preprocess.width]),
        }

    @classmethod
    def from_props(cls, props: dict[str, str], *, source: str = "model") -> DeploymentMetadata:
        """Parse metadata written by :meth:`to_props`; a clear error when it is absent or newer."""
        if KEY_MODEL not in props or KEY_PREPROCESS not in props:
            raise RetinaEdgeError(
                f"{source} carries no retina-edge metadata (was it exported by another tool?); "
                "pass the preprocessing and class settings explicitly"
            )
        version = int(props.get(KEY_FORMAT, "1"))
        if version > FORMAT_VERSION:
            raise RetinaEdgeError(f"{source} uses metadata format {version}; this retina-edge reads up to "
                                  f"{FORMAT_VERSION}: upgrade retina-edge")
        return cls(
            model=ModelConfig.from_dict(json.loads(props[KEY_MODEL])),
            preprocess=PreprocessConfig.from_dict(json.loads(props[KEY_PREPROCESS])),
            postprocess=props.get(KEY_POSTPROCESS, "decode"),
            precision=props.get(KEY_PRECISION, "fp32"),
            toolkit_version=props.get(KEY_VERSION, "unknown"),
        )
