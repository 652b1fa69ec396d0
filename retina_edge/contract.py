"""The deployed model's contract: tensor names, layouts, and the typed metadata every stage shares (no torch).

Export writes a :class:`DeploymentMetadata` into the ONNX file (and the engine header); every later
stage (calibration, engine build, runtime, verify, bench) gets that object and hands it on. No
stage reads or writes the raw ``metadata_props`` strings except :meth:`DeploymentMetadata.to_props`
and :meth:`DeploymentMetadata.from_props`.

Input ``images``: ``(B, 3, H, W)`` float32, RGB, letterboxed and normalised as ``preprocess``
says (:mod:`retina_edge.preprocess`); or, in a frame graph (``frame``, a
:class:`~retina_edge.preprocess.FrameInput`), ``(B, H_f, W_f, 3)`` uint8 camera frames, which the
graph letterboxes and normalises itself, its boxes then in the frames' pixels, clipped to them.

Outputs by graph tail (the :data:`TAILS` table declares each; a plugin adds its own with
:func:`register_tail`), boxes always x1y1x2y2 in network-input pixels:

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
  ``det_boxes``/``det_scores`` float32, ``det_labels`` float32, D <= 200 (its ``max_detections``).
  Its input is what nvinfer hands the network with ``net-scale-factor=1/255`` and zero offsets (RGB
  in [0, 1], see :func:`nvinfer_preprocess`); the graph applies the model's mean/std itself.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from retina_edge._version import __version__
from retina_edge.config import ModelConfig, PostprocessConfig
from retina_edge.errors import RetinaEdgeError
from retina_edge.preprocess import FrameInput, PreprocessConfig
from retina_edge.registry import Registry

logger = logging.getLogger(__name__)

INPUT_NAME = "images"
#: Name prefixes of the network's nodes (backbone + FPN, heads) in every exported graph; the
#: exporter names nodes after modules. All other nodes form the post-network tail (decode, NMS).
NETWORK_SCOPES = ("/backbone/", "/head/")
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
#: File suffixes of TensorRT engines written by retina-edge (anything else is an ONNX model).
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")

#: Files are written in the lowest format that describes them: 3 for frame graphs (an older reader,
#: which knows up to 2, refuses them instead of feeding them normalised float batches), else 2.
FORMAT_VERSION = 3
FRAME_FORMAT_VERSION = 3
PLAIN_FORMAT_VERSION = 2
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
KEY_FRAME = KEY_PREFIX + "frame"
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


def check_name(value: str, what: str) -> str:
    """Precisions, graph targets and tail names are short lowercase names (``int8``, ``tensorrt``):
    the recipe and tail tables say which exist, the contract only records them."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise RetinaEdgeError(f"{what} must be a short lowercase name (letters, digits, '-', '_'), got {value!r}")
    return value


def check_score_thresh(value: float) -> float:
    """A score threshold must be a number in [0, 1] (scores are sigmoid probabilities)."""
    if not isinstance(value, (int, float)) or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise RetinaEdgeError(f"the score threshold must be between 0 and 1, got {value}")
    return float(value)


#: What the host does after a tail depends only on the form of its outputs: ``raw`` head tensors
#: (decode anchors, threshold, NMS), ``candidates`` (threshold, NMS) or final ``detections`` (read
#: the first ``num_detections`` rows). Each form's outputs, in order, and their default types.
FORMS: dict[str, tuple[tuple[str, str], ...]] = {
    "raw": (("cls_logits", "float32"), ("bbox_regression", "float32")),
    "candidates": (("boxes", "float32"), ("scores", "float32"), ("labels", "int64")),
    "detections": (("num_detections", "int64"), ("det_boxes", "float32"), ("det_scores", "float32"),
                   ("det_labels", "int64")),
}
#: The postprocessing settings each form bakes into the graph (the others the host applies).
_BAKED = {"raw": (), "candidates": ("topk_candidates",),
          "detections": ("topk_candidates", "score_thresh", "nms_thresh", "detections_per_img")}


@dataclass(frozen=True)
class TailSpec:
    """One graph tail, declared once and read by export, the runtime, verify, Triton and DeepStream.

    ``form``: one of :data:`FORMS`, which fixes the output names, what the tail bakes in and what
    the host does after it. ``module``: ``"package.module:Class"``, the torch module export traces,
    built as ``Class(model, input_size, tail)`` (:mod:`retina_edge.export.graph_heads` has the
    built-in ones). ``dtypes``: the outputs' types when they differ from the form's.
    ``max_detections``: the most detections a consumer reads (caps ``detections_per_img``).
    ``normalises_input``: the graph takes RGB in [0, 1] and applies the model's mean/std itself
    (nvinfer's input with ``net-scale-factor=1/255``). ``consumer``: the outside reader the outputs
    are laid out for (``deepstream``: the stock batched-NMS parser), if any.
    """

    name: str
    form: str
    module: str
    dtypes: tuple[str, ...] = ()
    max_detections: int | None = None
    normalises_input: bool = False
    consumer: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        check_name(self.name, "a graph tail's name")
        if self.form not in FORMS:
            raise RetinaEdgeError(f"a graph tail's form must be one of {tuple(FORMS)}, got {self.form!r}")
        if self.dtypes and len(self.dtypes) != len(FORMS[self.form]):
            raise RetinaEdgeError(f"the {self.form} form has {len(FORMS[self.form])} outputs; {self.name} gives "
                                  f"{len(self.dtypes)} types")

    @property
    def outputs(self) -> tuple[tuple[str, str], ...]:
        """(name, NumPy type name) of each output, in order."""
        form = FORMS[self.form]
        return tuple(zip((name for name, _ in form), self.dtypes or (dtype for _, dtype in form)))

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.outputs)

    @property
    def compared(self) -> tuple[str, ...]:
        """The outputs ``verify`` compares with the reference's: every raw tensor, or the
        (boxes, scores, labels) of candidates and detections, paired box by box."""
        return self.output_names if self.form == "raw" else self.output_names[-3:]

    def bake(self, postprocess: PostprocessConfig) -> GraphTail:
        """This tail with ``postprocess``'s settings baked where its form bakes them."""
        baked = {name: getattr(postprocess, name) for name in _BAKED[self.form]}
        if "detections_per_img" in baked and self.max_detections is not None:
            baked["detections_per_img"] = min(baked["detections_per_img"], self.max_detections)
        return GraphTail(self.name, **baked)


def _builtin_tails() -> None:
    heads = "retina_edge.export.graph_heads"
    for spec in (
        TailSpec("none", "raw", f"{heads}:RawOutputs", description="raw head tensors; the host decodes anchors and runs NMS"),
        TailSpec("decode", "candidates", f"{heads}:DecodedCandidates",
                 description="per-level top-k, decoded and clipped; the host runs NMS"),
        TailSpec("nms", "detections", f"{heads}:NmsDetections", description="decode + NMS: final detections"),
        TailSpec("deepstream", "detections", f"{heads}:DeepStreamDetections",
                 dtypes=("int32", "float32", "float32", "float32"), max_detections=200, normalises_input=True,
                 consumer="deepstream", description="nms for DeepStream's stock parser: its types, at most 200 "
                                                    "detections, normalisation inside"),
    ):
        register_tail(spec)


#: Tail name -> :class:`TailSpec`; a plugin adds one with :func:`register_tail`.
TAILS: Registry[TailSpec] = Registry("graph tail", builtins=_builtin_tails)


def check_frame_tail(tail: str) -> None:
    """A frame graph returns final detections in frame pixels: its tail must be of that form."""
    if TAILS.get(tail).form != "detections":
        fitting = [spec.name for spec in TAILS.values() if spec.form == "detections"]
        raise RetinaEdgeError(f"a frame graph returns final detections in frame pixels: it needs a tail of the "
                              f"detections form ({', '.join(fitting)}), not {tail}", option="tail")


def register_tail(spec: TailSpec, *, replace: bool = False) -> TailSpec:
    return TAILS.register(spec.name, spec, replace=replace)


def unregister_tail(name: str) -> None:
    TAILS.unregister(name)


@dataclass(frozen=True)
class GraphTail:
    """What the graph computes after the network (``mode``: a registered tail's name, see
    :class:`TailSpec`), and the post-processing settings baked into it. A setting is ``None`` when
    the graph does not bake it (the host applies the model's): ``decode`` bakes
    ``topk_candidates``; ``nms`` and ``deepstream`` also ``score_thresh``, ``nms_thresh`` and
    ``detections_per_img`` (at most 200 for ``deepstream``).
    """

    mode: str = "decode"
    topk_candidates: int | None = None
    score_thresh: float | None = None
    nms_thresh: float | None = None
    detections_per_img: int | None = None

    def __post_init__(self) -> None:
        limit = self.spec.max_detections
        if limit is not None and (self.detections_per_img or 0) > limit:
            raise RetinaEdgeError(f"the {self.mode} tail keeps at most {limit} detections (what its consumer reads), "
                                  f"got {self.detections_per_img}")

    @property
    def spec(self) -> TailSpec:
        return TAILS.get(self.mode)

    @classmethod
    def bake(cls, mode: str, postprocess: PostprocessConfig) -> GraphTail:
        """The tail ``mode`` with ``postprocess``'s settings baked where that tail bakes them."""
        return TAILS.get(mode).bake(postprocess)

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.spec.output_names

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
    the graph or engine takes; ``precision`` (fp32, fp16, int8) and ``target`` (any, tensorrt, cpu);
    ``frame``: the camera frames a frame graph takes (None: the graph takes the normalised batch
    ``preprocess`` makes on the host). A frame graph's tail is of the ``detections`` form, its
    boxes already in frame pixels; ``preprocess`` still says what the graph does inside.
    """

    model: ModelConfig
    preprocess: PreprocessConfig
    tail: GraphTail
    batch: tuple[int, int, int] = (1, 1, 1)
    precision: str = "fp32"
    target: str = "any"
    toolkit_version: str = __version__
    frame: FrameInput | None = None

    def __post_init__(self) -> None:
        check_batch_range(self.batch)
        check_name(self.precision, "the precision")
        check_name(self.target, "the graph target")
        if self.frame is not None:
            check_frame_tail(self.tail.mode)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image of the graph's input: ``(H_f, W_f, 3)`` frames, or ``(3, H, W)``."""
        if self.frame is not None:
            return (*self.frame.size, 3)
        return (3, *self.input_size)

    @property
    def input_dtype(self) -> str:
        """NumPy type name of the graph's input: ``uint8`` frames, or the ``float32`` normalised batch."""
        return "uint8" if self.frame is not None else "float32"

    def without_frame(self) -> DeploymentMetadata:
        """The contract of the same network taking the host's normalised batch: what calibration and
        the accuracy search run (a frame graph is that graph with its frame steps around it)."""
        return dataclasses.replace(self, frame=None)

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
        frame = {KEY_FRAME: json.dumps(self.frame.to_dict())} if self.frame is not None else {}
        return {
            KEY_FORMAT: str(FRAME_FORMAT_VERSION if self.frame is not None else PLAIN_FORMAT_VERSION),
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
            **frame,
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
                       toolkit_version=props.get(KEY_VERSION, "unknown"),
                       frame=FrameInput.from_dict(json.loads(props[KEY_FRAME])) if KEY_FRAME in props else None)
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
