"""Triton model repositories for deployed retina-edge models (``retina-edge triton``).

Default: one Python-backend model (``<name>``) wrapping the torch-free runtime: JPEG/PNG bytes in,
boxes/scores/labels out, Triton's dynamic batcher gathering requests of different image sizes into
one runtime call. ``ensemble=True``: the network as its own model (``tensorrt_plan`` for an engine,
``onnxruntime_onnx`` for ONNX, or ``python`` for Triton builds without those backends) between a
preprocessing and a postprocessing Python model, tied by an ensemble named ``<name>``.

A frame graph (camera frames in, detections in frame pixels out) needs neither: it is served as
one network model ``<name>`` (``tensorrt_plan`` or ``onnxruntime_onnx``; ``python`` for Triton
builds without those) taking ``images`` uint8 ``(H, W, 3)`` frames per request and giving the
detections form's outputs, its contract in the config's parameters for :class:`TritonDetector`.

Each model folder holds ``config.pbtxt`` and ``1/`` (``model.py`` and/or the model file); the
repository is what a GPU server needs, with retina-edge installed in its Python (a frame graph
served by ``tensorrt_plan`` or ``onnxruntime_onnx`` needs no Python at all).
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from retina_edge.atomic import staging_folder
from retina_edge.contract import DeploymentMetadata, is_engine_path
from retina_edge.errors import RetinaEdgeError
from retina_edge.triton import configs
from retina_edge.triton.configs import DETECTIONS, IMAGE_BYTES, Scheduling

BACKEND_MODEL = Path(__file__).with_name("backend_model.py")
NETWORK_BACKENDS = ("auto", "tensorrt_plan", "onnxruntime_onnx", "python")
#: Model copies per device at most: each is a process (a Python stub) holding its own model.
MAX_INSTANCES = 64


@dataclass(frozen=True)
class RepositoryOptions:
    """``max_batch``: requests per runtime call; ``instances``: model copies per device;
    ``max_queue_delay_us``: how long the batcher may hold a request to fill a batch; ``ensemble``
    and ``network_backend`` (auto: tensorrt_plan for engines, onnxruntime_onnx for ONNX)."""

    name: str = "retina_edge"
    max_batch: int = 8
    instances: int = 1
    max_queue_delay_us: int = 2000
    ensemble: bool = False
    network_backend: str = "auto"

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "_-" for c in self.name):
            raise RetinaEdgeError(f"model name {self.name!r}: use letters, digits, '_' and '-'")
        for what, value in (("max_batch", self.max_batch), ("instances", self.instances)):
            if value < 1:
                raise RetinaEdgeError(f"{what} must be at least 1, got {value}", option=what)
        if self.instances > MAX_INSTANCES:
            raise RetinaEdgeError(f"{self.instances} model instances asked for; each is a process with its own copy of "
                                  f"the model: at most {MAX_INSTANCES}", option="instances")
        if self.max_queue_delay_us < 0:
            raise RetinaEdgeError(f"max_queue_delay_us must be >= 0, got {self.max_queue_delay_us}",
                                  option="max_queue_delay_us")
        if self.network_backend not in NETWORK_BACKENDS:
            raise RetinaEdgeError(f"unknown network backend {self.network_backend!r}; expected one of {NETWORK_BACKENDS}")


def write_repository(model: str | os.PathLike, repository: str | os.PathLike, options: RepositoryOptions) -> list[Path]:
    """Write the model folders serving ``model`` (an ONNX graph or engine with our metadata) into
    ``repository``; returns them. Folders of the same names are replaced whole, each atomically."""
    from retina_edge.runtime.core.model_file import read_deployment

    model = Path(model)
    metadata = read_deployment(model)  # refuses files without our contract before writing anything
    repository = Path(repository)
    if metadata.frame is not None:
        return [_write_frame_model(model, metadata, repository, options)]
    if not options.ensemble:
        if options.network_backend != "auto":  # would be ignored: one Python model runs the whole graph
            raise RetinaEdgeError(f"a network backend ({options.network_backend}) is for the network model of an "
                                  f"ensemble or a frame graph; {model.name} is served by one Python model: ask for an "
                                  "ensemble or leave the backend out", option="network_backend")
        kind = "KIND_GPU" if is_engine_path(model) else "KIND_AUTO"
        scheduling = Scheduling(options.max_batch, options.instances, kind, options.max_queue_delay_us)
        config = configs.python_model(options.name, "detect", metadata, scheduling, inputs=(IMAGE_BYTES,),
                                      outputs=DETECTIONS, model_file=model.name)
        return [_write_model(repository / options.name, config, {"model.py": BACKEND_MODEL, model.name: model})]
    return _write_ensemble(model, metadata, repository, options)


def _network_backend(model: Path, metadata: DeploymentMetadata, options: RepositoryOptions) -> str:
    """The backend serving the graph itself (auto: ``tensorrt_plan`` for engines, ``onnxruntime_onnx``
    for ONNX), checked against the file and the graph's batch range."""
    low = metadata.batch[0]
    if low > 1:
        raise RetinaEdgeError(f"the graph's smallest batch is {low}; Triton sends the network model batches from 1 "
                              "up: export it with a batch range starting at 1", option="batch")
    backend = options.network_backend
    if backend == "auto":
        backend = "tensorrt_plan" if is_engine_path(model) else "onnxruntime_onnx"
    if (backend == "tensorrt_plan") != is_engine_path(model):
        raise RetinaEdgeError(f"the {backend} network backend needs a {'TensorRT engine' if backend == 'tensorrt_plan' else 'ONNX model'}, not {model.name}")
    return backend


def _write_frame_model(model: Path, metadata: DeploymentMetadata, repository: Path, options: RepositoryOptions) -> Path:
    """A frame graph as one network model named ``options.name``: frames in, detections out, no Python stage."""
    if options.ensemble:
        raise RetinaEdgeError(f"{model.name} is a frame graph: its preprocessing and box mapping are inside, so Triton "
                              "serves it as one network model, with no ensemble around it", option="ensemble")
    backend = _network_backend(model, metadata, options)
    kind = "KIND_GPU" if backend == "tensorrt_plan" else "KIND_AUTO"
    scheduling = Scheduling(min(options.max_batch, metadata.batch[2]), options.instances, kind, options.max_queue_delay_us)
    return _write_network(repository / options.name, model, metadata, backend, scheduling, contract=True)


def _write_ensemble(model: Path, metadata: DeploymentMetadata, repository: Path, options: RepositoryOptions) -> list[Path]:
    backend = _network_backend(model, metadata, options)
    high = metadata.batch[2]
    name = options.name
    batch = min(options.max_batch, high)
    scheduling = Scheduling(batch, options.instances, "KIND_AUTO", options.max_queue_delay_us)
    network_in, network_out = configs.network_tensors(metadata)
    source_size = ("source_size", "TYPE_INT32", (2,))
    def wired(prefix: str, *tensors: configs.Tensor) -> dict[str, str]:
        """model tensor -> ensemble tensor; those between steps are named after the step that makes them
        (a decode-tail network's ``boxes`` must not be the ensemble's ``boxes``: Triton refuses that)."""
        return {tensor[0]: f"{prefix}{tensor[0]}" for tensor in tensors}

    steps = [(f"{name}_preprocess", wired("", IMAGE_BYTES), wired("preprocess.", *network_in, source_size)),
             (f"{name}_network", wired("preprocess.", *network_in), wired("network.", *network_out)),
             (f"{name}_postprocess", {**wired("network.", *network_out), **wired("preprocess.", source_size)},
              wired("", *DETECTIONS))]
    ensemble = configs.ensemble_model(name, metadata, Scheduling(batch, 1, "KIND_AUTO", 0), steps)  # checks the wiring
    folders = [
        _write_model(repository / f"{name}_preprocess",
                     configs.python_model(f"{name}_preprocess", "preprocess", metadata, scheduling, inputs=(IMAGE_BYTES,),
                                          outputs=(*network_in, source_size)), {"model.py": BACKEND_MODEL}),
        _write_network(repository / f"{name}_network", model, metadata, backend,
                       Scheduling(batch, options.instances, "KIND_GPU" if backend == "tensorrt_plan" else "KIND_AUTO",
                                  options.max_queue_delay_us)),
        _write_model(repository / f"{name}_postprocess",
                     configs.python_model(f"{name}_postprocess", "postprocess", metadata, scheduling,
                                          inputs=(*network_out, source_size), outputs=DETECTIONS), {"model.py": BACKEND_MODEL}),
    ]
    return [*folders, _write_model(repository / name, ensemble, {})]  # an ensemble still needs its version folder


def _write_network(folder: Path, model: Path, metadata: DeploymentMetadata, backend: str, scheduling: Scheduling, *,
                   contract: bool = False) -> Path:
    """The graph as a network model; ``contract``: its config carries the deployment contract (the
    python backend's always does)."""
    if backend == "python":
        inputs, outputs = configs.network_tensors(metadata)
        config = configs.python_model(folder.name, "network", metadata, scheduling, inputs=inputs, outputs=outputs,
                                      model_file=model.name)
        return _write_model(folder, config, {"model.py": BACKEND_MODEL, model.name: model})
    config = configs.network_model(folder.name, backend, metadata, scheduling, contract=contract)
    if backend == "tensorrt_plan":
        from retina_edge.runtime.tensorrt.engine_file import read_engine_file

        plan = read_engine_file(model).plan  # Triton loads the bare plan, without our header
        return _write_model(folder, config, {"model.plan": plan})
    return _write_model(folder, config, {"model.onnx": model})


def _write_model(folder: Path, config: str, files: dict[str, Path | bytes]) -> Path:
    """``folder/config.pbtxt`` and ``folder/1/<files>`` (paths copied, bytes written), swapped in whole;
    two writers of one folder at once each stage in their own place, the last one wins."""
    staging = staging_folder(folder)  # with the umask's mode, as every other output
    try:
        _stage(staging, config, files)
        for _ in range(10):  # another writer may put its folder in place between our removal and rename
            shutil.rmtree(folder, ignore_errors=True)
            try:
                staging.rename(folder)
                return folder
            except OSError as error:
                if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
        raise RetinaEdgeError(f"{folder} kept being replaced by another writer")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _stage(staging: Path, config: str, files: dict[str, Path | bytes]) -> None:
    (staging / "1").mkdir()
    for name, content in files.items():
        if isinstance(content, bytes):
            (staging / "1" / name).write_bytes(content)
        else:
            shutil.copyfile(content, staging / "1" / name)
    (staging / "config.pbtxt").write_text(config)
