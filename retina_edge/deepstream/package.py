"""``retina-edge deepstream``: a folder DeepStream runs as it is (no C++, the stock parser).

From a ``deepstream`` graph (ONNX) or an engine built from one by retina-edge, :func:`write_deepstream`
writes into one folder: the model (the ONNX graph, or the engine's bare TensorRT plan, since nvinfer
cannot read our header), ``labels.txt``, ``config_infer_primary.txt`` (Gst-nvinfer),
``deepstream_app_config.txt`` (N sources, tracker on) and ``config_inferserver_primary.txt``
(Gst-nvinferserver, for the Triton repository ``retina-edge triton --ensemble`` writes). The target
releases are checked first (:mod:`.target`).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from retina_edge.atomic import write_bytes_atomic
from retina_edge.contract import TAILS, DeploymentMetadata, is_engine_path
from retina_edge.deepstream.app import SAMPLE_STREAM, AppSettings, app_sections, check_uri
from retina_edge.deepstream.folder import check_unedited, write_texts
from retina_edge.deepstream.inferserver import InferServerSettings, inferserver_config
from retina_edge.deepstream.nvinfer import NvinferSettings, labels_text, network_mode, nvinfer_sections, render_ini
from retina_edge.deepstream.target import Deployment, Target, check_target
from retina_edge.errors import RetinaEdgeError

logger = logging.getLogger(__name__)

INFER_CONFIG = "config_infer_primary.txt"
APP_CONFIG = "deepstream_app_config.txt"
INFERSERVER_CONFIG = "config_inferserver_primary.txt"
LABELS = "labels.txt"
#: The config files a write replaces; an edit made to one since is never replaced unasked (.folder).
CONFIG_FILES = (LABELS, INFER_CONFIG, APP_CONFIG, INFERSERVER_CONFIG)
#: Sources one deepstream-app config may name: NVIDIA's performance guide needs driver registry keys
#: for more than 200 streams on one GPU (Hopper, Ampere, Ada), and the app runs on one GPU.
MAX_SOURCES = 256
#: Why DeepStream keeps nvinfer's own preprocessing (Gst-nvinfer docs): nvinfer scales every frame
#: (NV12/RGBA in GPU memory) to the network's input size on the GPU or VIC and normalises it into
#: the engine's float input, and it scales the parser's boxes from that size back to the frame
#: itself; only tensors prepared by Gst-nvdspreprocess (a C++ library) skip that. A frame graph's
#: camera-size uint8 input is not a tensor nvinfer makes, its frame-pixel boxes would be scaled a
#: second time, and the work it moves off the host is work DeepStream already does on the device.
FRAME_GRAPH_REFUSED = ("{model} is a frame graph (camera frames in, boxes in frame pixels): nvinfer keeps its own "
                       "preprocessing (it scales and normalises frames on the GPU into the network's float input and maps "
                       "the parser's boxes back to the frame itself), so DeepStream takes the graph without a frame input: "
                       "export the deepstream tail without a frame size")


@dataclass(frozen=True)
class DeepStreamOptions:
    """``uris``: the sources of the deepstream-app config (default: ``sources`` copies of
    DeepStream's sample stream); ``batch_size``: frames per inference (default: one per source,
    within the model's batch range); ``score_thresh``: the parser's threshold (default: the
    model's); ``triton_repository``/``triton_model``: where ``retina-edge triton --ensemble
    --name NAME`` put the network model (``NAME_network``); ``calibration_cache``: a legacy INT8
    cache for an FP32 graph; ``target``: the releases to check against."""

    sources: int = 1
    uris: tuple[str, ...] = ()
    batch_size: int | None = None
    score_thresh: float | None = None
    gie_unique_id: int = 1
    gpu_id: int = 0
    dla_core: int | None = None
    calibration_cache: str | None = None
    triton_repository: str = "model_repository"
    triton_model: str = "retina_edge"
    target: Target = field(default_factory=Target)
    #: Replace config files edited since retina-edge wrote them (else refused, before any work).
    replace_edited: bool = False

    def __post_init__(self) -> None:
        if self.sources < 1 or (self.batch_size is not None and self.batch_size < 1):
            raise RetinaEdgeError(f"the source count and batch size must be at least 1, got {self.sources} and {self.batch_size}")
        if self.sources > MAX_SOURCES:
            raise RetinaEdgeError(f"{self.sources} sources: one deepstream-app config runs on one GPU, and above 200 "
                                  f"streams NVIDIA's guide needs driver changes; at most {MAX_SOURCES} here, split the "
                                  "rest over several apps (or GPUs)", option="sources")
        if self.uris and len(self.uris) != self.sources:
            raise RetinaEdgeError(f"{len(self.uris)} source URIs given for {self.sources} sources")
        for uri in self.uris:
            check_uri(uri)

    @property
    def source_uris(self) -> tuple[str, ...]:
        return self.uris or (SAMPLE_STREAM,) * self.sources


def write_deepstream(model: str | os.PathLike, folder: str | os.PathLike, options: DeepStreamOptions) -> list[Path]:
    """Write the DeepStream folder for ``model`` (``deepstream`` graph or engine); returns the files."""
    from retina_edge.runtime.core.model_file import read_deployment

    model, folder = Path(model), Path(folder)
    metadata = read_deployment(model)
    if metadata.frame is not None:
        raise RetinaEdgeError(FRAME_GRAPH_REFUSED.format(model=model.name))
    if metadata.tail.spec.consumer != "deepstream":
        fitting = [spec.name for spec in TAILS.values() if spec.consumer == "deepstream"]
        raise RetinaEdgeError(f"{model} has the graph tail {metadata.tail.mode!r}; DeepStream's stock parser needs "
                              f"the {' or '.join(map(repr, fitting))} tail: export it with that tail (or give the weights)")
    network_mode(metadata, legacy_int8=bool(options.calibration_cache))  # a precision nvinfer cannot run stops here
    header = _engine_header(model)
    deployment = Deployment(header, options.dla_core, bool(options.calibration_cache), metadata.precision)
    for warning in check_target(options.target, deployment):
        logger.warning("%s", warning)
    batch = _batch_size(metadata, options)
    check_unedited(folder, CONFIG_FILES, replace_edited=options.replace_edited)
    folder.mkdir(parents=True, exist_ok=True)
    model_file = _write_model(model, folder, header is not None)
    score = metadata.score_thresh if options.score_thresh is None else options.score_thresh
    infer = NvinferSettings(model_file=model_file.name, batch_size=batch, score_thresh=score, gie_unique_id=options.gie_unique_id,
                            gpu_id=options.gpu_id, labels_file=LABELS, dla_core=options.dla_core,
                            calibration_cache=options.calibration_cache)
    server = InferServerSettings(repository=options.triton_repository, model_name=f"{options.triton_model}_network",
                                 max_batch=batch, score_thresh=score, gie_unique_id=options.gie_unique_id,
                                 gpu_id=options.gpu_id, labels_file=LABELS)
    app = AppSettings(uris=options.source_uris, batch_size=batch, infer_config=INFER_CONFIG,
                      gie_unique_id=options.gie_unique_id, gpu_id=options.gpu_id)
    texts = {
        LABELS: labels_text(metadata),
        INFER_CONFIG: render_ini(nvinfer_sections(metadata, infer), f"Gst-nvinfer config written by retina-edge for "
                                 f"{model.name} ({metadata.label}, input {metadata.input_size[0]}x{metadata.input_size[1]})"),
        APP_CONFIG: render_ini(app_sections(app), f"deepstream-app config written by retina-edge: {options.sources} "
                               f"source(s), tracker on\nrun: deepstream-app -c {APP_CONFIG}"),
        INFERSERVER_CONFIG: inferserver_config(metadata, server),
    }
    return [model_file, *write_texts(folder, texts)]


def check_before_export(folder: str | os.PathLike, options: DeepStreamOptions) -> None:
    """What :func:`write_deepstream` would refuse of the FP32 graph exported from weights, checked
    before that export: the target's releases, and config files edited since they were written."""
    check_target(options.target, Deployment(None, options.dla_core, bool(options.calibration_cache), "fp32"))
    check_unedited(folder, CONFIG_FILES, replace_edited=options.replace_edited)


def _engine_header(model: Path) -> dict | None:
    if not is_engine_path(model):
        return None
    from retina_edge.runtime.tensorrt.engine_file import read_engine_file

    return read_engine_file(model).header


def _batch_size(metadata: DeploymentMetadata, options: DeepStreamOptions) -> int:
    low, _, high = metadata.batch
    batch = options.batch_size or min(max(options.sources, low), high)
    if not low <= batch <= high:
        raise RetinaEdgeError(f"batch size {batch} is outside the model's batch range {low}..{high}; export it with "
                              f"the batch range (1, {batch}, {batch})", option="batch_size")
    if batch < options.sources:
        logger.warning("%d sources share batches of %d: nvinfer runs %d calls per frame set", options.sources, batch,
                       -(-options.sources // batch))
    return batch


def _write_model(model: Path, folder: Path, engine: bool) -> Path:
    """The model file nvinfer reads: the bare plan of an engine, or the ONNX graph as it is."""
    if engine:
        from retina_edge.runtime.tensorrt.engine_file import read_engine_file

        target = folder / f"{model.stem}.plan"
        write_bytes_atomic(target, read_engine_file(model).plan)
        return target
    target = folder / model.name
    if target.resolve() != model.resolve():
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(model, tmp)
        os.replace(tmp, target)
    return target
