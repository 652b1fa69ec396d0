"""The deployed model's contract: tensor names, layouts, and the typed metadata every stage shares (no torch).

Export writes a :class:`DeploymentMetadata` into the ONNX file (and the engine header); every later
stage (calibration, engine build, runtime, verify, bench) gets that object and hands it on. No
stage reads or writes the raw ``metadata_props`` strings except :meth:`DeploymentMetadata.to_props`
and :meth:`DeploymentMetadata.from_props`.

Input ``images``: ``(B, 3, H, W)`` float32, RGB, letterboxed and normalised as ``preprocess``
says (:mod:`retina_edge.preprocess`).

Outputs by graph tail, boxes always x1y1x2y2 in network-input pixels:

- ``none``: ``cls_logits`` ``(B, N, K)`` raw logits and ``bbox_regression`` ``(B, N, 4)`` raw deltas,
  N = sum over P3..P7 of H_l * W_l * A, anchors in (level, y, x, anchor) order;
- ``decode``: ``boxes`` ``(B, M, 4)``, ``scores`` ``(B, M)`` sigmoid scores, ``labels`` ``(B, M)``
  int64: each level's top-k (anchor, class) pairs, decoded and clipped to the input, M = sum of
  the per-level k; entries may score below the threshold (the host filters, then runs NMS);
- ``nms``: ``num_detections`` ``(B, 1)`` int64, ``det_boxes`` ``(B, D, 4)``, ``det_scores``
  ``(B, D)``, ``det_labels`` ``(B, D)`` int64, D = ``detections_per_img``; rows past
  ``num_detections`` are padding (score 0);
- ``deepstream``: the ``nms`` outputs in the types DeepStream's stock parser
  ``NvDsInferParseYoloV5CustomBatchedNMSTLT`` reads by index: ``num_detections`` int32,
  ``det_boxes``/``det_scores`` float32, ``det_labels`` float32, D <= :data:`DEEPSTREAM_MAX_DETECTIONS`.
  Its input is what nvinfer hands the network with ``net-scale-factor=1/255`` and zero offsets (RGB
  in [0, 1], see :func:`nvinfer_preprocess`); the graph applies the model's mean/std itself.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from retina_edge._version import __version__
from retina_edge.config import ModelConfig, PostprocessConfig
from retina_edge.errors import RetinaEdgeError
from retina_edge.preprocess import PreprocessConfig

logger = logging.getLogger(__name__)

INPUT_NAME = "images"
OUTPUTS = {
    "none": ("cls_logits", "bbox_regression"),
    "decode": ("boxes", "scores", "labels"),
    "nms": ("num_detections", "det_boxes", "det_scores", "det_labels"),
    "deepstream": ("num_detections", "det_boxes", "det_scores", "det_labels"),
}
TAIL_MODES = tuple(OUTPUTS)
#: The stock DeepStream parser reads at most this many detections (its ``keep_top_k``).
DEEPSTREAM_MAX_DETECTIONS = 200
#: Name prefixes of the network's nodes (backbone + FPN, heads) in every exported graph; the
#: exporter names nodes after modules. All other nodes form the post-network tail (decode, NMS).
NETWORK_SCOPES = ("/backbone/", "/head/")
PRECISIONS = ("fp32", "fp16", "int8")
#: What a precision graph was placed for: ``any`` runtime, or INT8 Q/DQ for ``tensorrt`` or ``cpu``.
TARGETS = ("any", "tensorrt", "cpu")
#: File suffixes of TensorRT engines written by retina-edge (anything else is an ONNX model).
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")

FORMAT_VERSION = 2
KEY_PREFIX = "retina_edge."
KEY_FORMAT = KEY_PREFIX + "format_version"
KEY_MODEL = KEY_PREFIX + "model"
KEY_PREPROCESS = KEY_PREFIX + "preprocess"
KEY_TAIL = KEY_PREFIX + "tail"
KEY_PRECISION = KEY_PREFIX + "precision"
KEY_TARGET = KEY_PREFIX + "target"
KEY_BATCH = KEY_PREFIX + "batch"
KEY_VERSION = KEY_PREFIX + "toolkit_version"
KEY_OUTPUTS = KEY_PREFIX + "outputs"
#: Format 1 wrote the tail's mode alone under this key (its baked settings were the model's).
KEY_POSTPROCESS_V1 = KEY_PREFIX + "postprocess"
# Plain keys for other tools (Netron, ONNX Runtime users) that do not parse our JSON.
KEY_NAMES = "names"
KEY_IMGSZ = "imgsz"


def is_engine_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a TensorRT engine (by suffix, :data:`ENGINE_SUFFIXES`)."""
    return Path(path).suffix.lower() in ENGINE_SUFFIXES


def check_batch_range(batch: tuple[int, int, int]) -> None:
    """Raise unless ``batch`` is a usable (min, opt, max) range: 1 <= min <= opt <= max."""
    low, opt, high = batch
    if not 1 <= low <= opt <= high:
        raise RetinaEdgeError(f"a batch range (MIN, OPT, MAX) needs 1 <= MIN <= OPT <= MAX, got {tuple(batch)}",
                              option="batch")


def nvinfer_preprocess(preprocess: PreprocessConfig) -> PreprocessConfig:
    """The input a ``deepstream`` graph takes: what nvinfer gives the network with
    ``net-scale-factor=1/255`` and ``offsets=0;0;0``, i.e. RGB in [0, 1] (mean 0, std 1), padding 0
    (black). Size, resize mode and placement are kept: nvinfer letterboxes with
    ``maintain-aspect-ratio=1``, top-left (``symmetric-padding=0``) or centred (``=1``)."""
    return dataclasses.replace(preprocess, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def check_score_thresh(value: float) -> float:
    """A score threshold must be a number in [0, 1] (scores are sigmoid probabilities)."""
    if not isinstance(value, (int, float)) or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise RetinaEdgeError(f"the score threshold must be between 0 and 1, got {value}")
    return float(value)


@dataclass(frozen=True)
class GraphTail:
    """What the graph computes after the network, and the post-processing settings baked into it.

    ``mode``: ``none`` (raw head tensors), ``decode`` (per-level top-k + anchor decoding), ``nms``
    (decode + NMS) or ``deepstream`` (``nms`` for DeepStream's stock parser, the normalisation
    folded in). A setting is ``None`` when the graph does not bake it (the host applies the
    model's): ``decode`` bakes ``topk_candidates``; ``nms`` and ``deepstream`` also
    ``score_thresh``, ``nms_thresh`` and ``detections_per_img`` (at most 200 for ``deepstream``).
    """

    mode: str = "decode"
    topk_candidates: int | None = None
    score_thresh: float | None = None
    nms_thresh: float | None = None
    detections_per_img: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in TAIL_MODES:
            raise RetinaEdgeError(f"unknown graph tail {self.mode!r}; expected one of {TAIL_MODES}")
        if self.mode == "deepstream" and (self.detections_per_img or 0) > DEEPSTREAM_MAX_DETECTIONS:
            raise RetinaEdgeError(f"the deepstream tail keeps at most {DEEPSTREAM_MAX_DETECTIONS} detections (what "
                                  f"DeepStream's parser reads), got {self.detections_per_img}")

    @classmethod
    def bake(cls, mode: str, postprocess: PostprocessConfig) -> GraphTail:
        """The tail of ``mode`` with ``postprocess``'s settings baked where that mode bakes them."""
        if mode == "none":
            return cls("none")
        if mode == "decode":
            return cls("decode", topk_candidates=postprocess.topk_candidates)
        limit = DEEPSTREAM_MAX_DETECTIONS if mode == "deepstream" else postprocess.detections_per_img
        return cls(mode, topk_candidates=postprocess.topk_candidates, score_thresh=postprocess.score_thresh,
                   nms_thresh=postprocess.nms_thresh, detections_per_img=min(postprocess.detections_per_img, limit))

    @property
    def output_names(self) -> tuple[str, ...]:
        return OUTPUTS[self.mode]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GraphTail:
        return cls(**data)


@dataclass(frozen=True)
class DeploymentMetadata:
    """Everything a runtime needs besides the graph.

    ``model``: architecture, classes, anchors, box coding and the post-processing the host applies
    (``model.postprocess``); ``preprocess``: input size, resize and normalisation; ``tail``: what the
    graph computes after the network and what it bakes in; ``batch``: (min, opt, max) batch range
    the graph or engine takes; ``precision`` (fp32, fp16, int8) and ``target`` (any, tensorrt, cpu).
    """

    model: ModelConfig
    preprocess: PreprocessConfig
    tail: GraphTail
    batch: tuple[int, int, int] = (1, 1, 1)
    precision: str = "fp32"
    target: str = "any"
    toolkit_version: str = __version__

    def __post_init__(self) -> None:
        check_batch_range(self.batch)
        if self.precision not in PRECISIONS:
            raise RetinaEdgeError(f"unknown precision {self.precision!r}; expected one of {PRECISIONS}")
        if self.target not in TARGETS:
            raise RetinaEdgeError(f"unknown target {self.target!r}; expected one of {TARGETS}")

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.tail.output_names

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) of the network input."""
        return self.preprocess.height, self.preprocess.width

    @property
    def score_thresh(self) -> float:
        """The score threshold detections pass: the model's, never below what the graph baked in."""
        return max(self.model.postprocess.score_thresh, self.tail.score_thresh or 0.0)

    @property
    def label(self) -> str:
        """Short name of precision and target, e.g. ``int8 for cpu`` or ``fp16``."""
        return self.precision + (f" for {self.target}" if self.target != "any" else "")

    def override(self, *, score_thresh: float | None = None, batch: tuple[int, int, int] | None = None,
                 precision: str | None = None, target: str | None = None) -> DeploymentMetadata:
        """A copy with the given fields changed (``None`` keeps a field); the one way to change metadata.

        A score threshold below the one the graph baked in cannot bring back what the graph dropped:
        that is logged, and detections keep passing the baked threshold.
        """
        changes: dict = {k: v for k, v in (("batch", batch), ("precision", precision), ("target", target)) if v is not None}
        if batch is not None:
            changes["batch"] = tuple(batch)
        if score_thresh is not None:
            check_score_thresh(score_thresh)
            baked = self.tail.score_thresh
            if baked is not None and score_thresh < baked:
                logger.warning("the graph has a score threshold of %g built in (its NMS tail): detections scoring "
                               "between %g and %g are not in its output; export it again with a lower threshold "
                               "to get them", baked, score_thresh, baked)
            post = dataclasses.replace(self.model.postprocess, score_thresh=score_thresh)
            changes["model"] = dataclasses.replace(self.model, postprocess=post)
        return dataclasses.replace(self, **changes)

    def to_props(self) -> dict[str, str]:
        """String key/values for ONNX ``metadata_props`` and the engine header."""
        return {
            KEY_FORMAT: str(FORMAT_VERSION),
            KEY_MODEL: json.dumps(self.model.to_dict()),
            KEY_PREPROCESS: json.dumps(self.preprocess.to_dict()),
            KEY_TAIL: json.dumps(self.tail.to_dict()),
            KEY_BATCH: ",".join(map(str, self.batch)),
            KEY_PRECISION: self.precision,
            KEY_TARGET: self.target,
            KEY_VERSION: self.toolkit_version,
            KEY_OUTPUTS: json.dumps(list(self.output_names)),
            KEY_NAMES: json.dumps(dict(enumerate(self.model.class_names))),
            KEY_IMGSZ: json.dumps(list(self.input_size)),
        }

    @classmethod
    def from_props(cls, props: dict[str, str], *, source: str = "model") -> DeploymentMetadata:
        """Parse what :meth:`to_props` wrote (format 1 files too); a clear error when it is absent,
        newer or damaged."""
        if KEY_MODEL not in props or KEY_PREPROCESS not in props:
            raise RetinaEdgeError(
                f"{source} carries no retina-edge metadata (was it exported by another tool?); "
                "export it with 'retina-edge export', or pass a DeploymentMetadata to Detector(metadata=...)"
            )
        try:
            version = int(props.get(KEY_FORMAT, "1"))
            if version > FORMAT_VERSION:
                raise RetinaEdgeError(f"{source} was written by a newer retina-edge ({props.get(KEY_VERSION, '?')}, "
                                      f"metadata format {version}; this one reads up to {FORMAT_VERSION}): upgrade retina-edge")
            model = ModelConfig.from_dict(json.loads(props[KEY_MODEL]), source=source)
            if version == 1:
                return cls._from_format1(props, model)
            return cls(model=model, preprocess=PreprocessConfig.from_dict(json.loads(props[KEY_PREPROCESS])),
                       tail=GraphTail.from_dict(json.loads(props[KEY_TAIL])),
                       batch=tuple(int(b) for b in props[KEY_BATCH].split(",")),
                       precision=props[KEY_PRECISION], target=props[KEY_TARGET],
                       toolkit_version=props.get(KEY_VERSION, "unknown"))
        except RetinaEdgeError:
            raise
        except (KeyError, ValueError, TypeError) as error:  # damaged or hand-edited metadata
            raise RetinaEdgeError(f"{source} has damaged retina-edge metadata ({type(error).__name__}: {error}); "
                                  "export it again") from None

    @classmethod
    def _from_format1(cls, props: dict[str, str], model: ModelConfig) -> DeploymentMetadata:
        """Format 1: precision and target in one string (``int8-cpu``), the tail's mode alone (it
        baked the model's own settings), the batch range optional."""
        precision, _, target = props.get(KEY_PRECISION, "fp32").partition("-")
        return cls(model=model, preprocess=PreprocessConfig.from_dict(json.loads(props[KEY_PREPROCESS])),
                   tail=GraphTail.bake(props.get(KEY_POSTPROCESS_V1, "decode"), model.postprocess),
                   batch=tuple(int(b) for b in props.get(KEY_BATCH, "1,1,1").split(",")),
                   precision=precision, target=target or "any", toolkit_version=props.get(KEY_VERSION, "unknown"))
