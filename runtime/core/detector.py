"""``Detector``: a deployed RetinaNet (ONNX or TensorRT engine) from images to detections, no torch.

    from retina_edge.runtime import Detector
    with Detector("synth-int8-cpu.onnx") as detector:      # backend and settings from the file
        for det in detector.detect(rgb_image)[0]:           # (H, W, 3) uint8 RGB
            print(det.name, det.score, det.box)             # box x1y1x2y2 in source pixels

Preprocessing, classes, anchors, batch range and thresholds come from the model's
:class:`~retina_edge.contract.DeploymentMetadata`; the host finishes what the graph left out
(anchor decoding for ``none`` graphs, NMS for ``none``/``decode`` graphs) and applies the score
threshold on every tail. A frame graph letterboxes, normalises and maps boxes back itself: the host
only stacks the frames (in the graph's channel order) and reads the detections. The three stages
are public (``preprocess``, ``infer``, ``postprocess``) for callers that time or reuse them.

Thread safety: ``detect`` may be called from several threads at once. ONNX Runtime sessions and
OpenVINO (one infer request per call) run concurrently; the TensorRT backend serialises calls on
its one execution context. Pre- and post-processing hold no shared mutable state.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from retina_edge.contract import DeploymentMetadata, is_engine_path
from retina_edge.errors import DataError, RetinaEdgeError
from retina_edge.preprocess import LetterboxInfo, input_batch
from retina_edge.runtime.backends.base import Backend, BackendOptions
from retina_edge.runtime.backends.registry import choose_backend, get_backend
from retina_edge.runtime.core.model_file import read_deployment
from retina_edge.runtime.core.finish import Finisher
from retina_edge.runtime.core.results import Detections


def open_backend(name: str, path: Path, options: BackendOptions, engine: object = None) -> Backend:
    """Load the registered backend ``name`` for ``path`` (``engine``: the parsed engine file, for
    backends that run engine files) with ``options``."""
    return get_backend(name).open(path, options, engine)


def infer_in_chunks(backend, batch: np.ndarray, batch_range: tuple[int, int, int]) -> dict[str, np.ndarray]:  # noqa: ANN001
    """``backend``'s outputs for a ``(B, 3, H, W)`` batch of any size B, run in chunks of the largest
    batch of ``batch_range`` (min, opt, max); a chunk below the minimum is padded with blank images
    whose outputs are dropped."""
    low, _, high = batch_range
    parts = []
    for start in range(0, len(batch), high):
        chunk = batch[start : start + high]
        count = len(chunk)
        if count < low:
            chunk = np.concatenate([chunk, np.zeros((low - count, *chunk.shape[1:]), dtype=chunk.dtype)])
        outputs = backend.run(np.ascontiguousarray(chunk))
        parts.append({name: value[:count] for name, value in outputs.items()})
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def as_image_list(images: Sequence[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    """One ``(H, W, 3)`` image, an ``(N, H, W, 3)`` stack or a sequence of images -> a list."""
    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            return [images]
        if images.ndim == 4:
            return list(images)
        raise DataError(f"expected an (H, W, 3) RGB image, an (N, H, W, 3) stack or a list of images; "
                        f"got an array of shape {images.shape}")
    listed = list(images) if isinstance(images, Iterable) else None
    if listed is None or not all(isinstance(image, np.ndarray) for image in listed):
        # None from a failed cv2.imread, mostly: said here, not as a TypeError deep in preprocessing
        wrong = images if listed is None else next(image for image in listed if not isinstance(image, np.ndarray))
        raise DataError(f"expected an (H, W, 3) RGB image, an (N, H, W, 3) stack or a list of images; got "
                        f"{'' if listed is None else 'a list holding '}"
                        f"{'None (did reading the image fail?)' if wrong is None else type(wrong).__name__}")
    return listed


class Detector:
    """Load a deployed model; ``detect(images)`` returns one :class:`Detections` per image.

    ``backend``: ``auto`` or a registered backend (:func:`~retina_edge.runtime.backends.backend_names`:
    onnxruntime, openvino, tensorrt and any plugin). ``options``: how to load it
    (:class:`~retina_edge.runtime.backends.BackendOptions`: device, threads, precision hint, CUDA
    graph, streams). ``metadata`` supplies the contract for ONNX files made by other tools (or
    replaces the file's). ``score_thresh`` overrides the model's threshold (see
    :meth:`DeploymentMetadata.override`). ``options.streams``: inferences that can run at once, which
    a :class:`~retina_edge.runtime.video.pipeline.Pipeline` over a file keeps in flight; 1 is the lowest
    latency per frame; ``"auto"`` measures whether several raise throughput for this model here
    (:mod:`~retina_edge.runtime.core.streams_choice`; for files, not live sources). ``close()`` (or
    ``with``) frees the backend.
    """

    def __init__(self, path: str | os.PathLike, *, backend: str = "auto", options: BackendOptions | None = None,
                 metadata: DeploymentMetadata | None = None, score_thresh: float | None = None) -> None:
        options = options or BackendOptions()
        self.path = Path(path)
        self.streams = 1 if options.streams == "auto" else options.streams
        name = choose_backend(self.path, backend)
        if options.cuda_graph and not is_engine_path(self.path):
            raise RetinaEdgeError(f"CUDA graphs (cuda_graph) are for TensorRT engines; {self.path.name} is ONNX",
                                  option="cuda_graph")
        engine = None
        if is_engine_path(self.path):
            from retina_edge.runtime.tensorrt.engine_file import read_engine_file

            engine = read_engine_file(self.path)  # the header is checked before TensorRT is needed
        contract = metadata or (engine.deployment if engine else read_deployment(self.path))
        self.metadata = contract.override(score_thresh=score_thresh)
        self._finish = Finisher(self.metadata)

        def load(chosen: str, count: int = self.streams) -> Backend:
            return open_backend(chosen, self.path, options.replace(streams=count), engine)

        settings = options.speed_settings()
        #: What ``backend="auto"`` picked for an ONNX model and why (None for explicit backends and engines).
        self.backend_choice = None
        if name == "auto":
            from retina_edge.runtime.core.backend_choice import choose_and_load

            self.backend_choice, self.backend = choose_and_load(self.path, self.metadata, load, device=options.device,
                                                                settings={**settings, "streams": self.streams})
            name = self.backend_choice.backend
        else:
            self.backend = load(name)
        self.backend_name = name
        #: What ``streams="auto"`` picked and why (None when streams was given).
        self.streams_choice = None
        if options.streams == "auto":
            self._choose_streams(lambda count: load(name, count), settings)
        missing = set(self.metadata.output_names) - set(self.backend.output_names)
        if missing:
            self.close()
            raise RetinaEdgeError(f"{self.path} lacks the outputs {sorted(missing)} its metadata promises")

    def _choose_streams(self, load, settings: dict) -> None:  # noqa: ANN001
        """``streams="auto"``: keep the backend loaded for one stream, or swap in one for several."""
        from retina_edge.runtime.core.backend_choice import probe_image
        from retina_edge.runtime.core.streams_choice import choose_streams

        image = probe_image(self.metadata)

        def one_frame(backend) -> list[Detections]:  # noqa: ANN001 - what a pipeline worker does per frame
            batch, infos = self.preprocess([image])
            return self.postprocess(infer_in_chunks(backend, batch, self.metadata.batch), infos)

        try:
            self.streams_choice, self.backend = choose_streams(self.path, self.backend, load, backend=self.backend_name,
                                                               settings=settings, work=one_frame)
        except BaseException:
            self.close()
            raise
        self.streams = self.streams_choice.streams

    @property
    def input_size(self) -> tuple[int, int]:
        return self.metadata.input_size

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.metadata.model.class_names

    @property
    def max_batch(self) -> int:
        return self.metadata.batch[2]

    def detect(self, images: Sequence[np.ndarray] | np.ndarray) -> list[Detections]:
        """Detections of each ``(H, W, 3)`` uint8 RGB image (a list, or one image -> a list of one)."""
        images = as_image_list(images)
        results: list[Detections] = []
        for start in range(0, len(images), self.max_batch):
            batch, infos = self.preprocess(images[start : start + self.max_batch])
            results.extend(self.postprocess(self.infer(batch), infos))
        return results

    __call__ = detect

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[LetterboxInfo]]:
        """The graph's input for the images and where each landed in it: the ``(B, 3, H, W)`` float32
        normalised batch, or for a frame graph the ``(B, H_f, W_f, 3)`` uint8 frames themselves
        (channels in the graph's order), which the graph letterboxes and normalises itself."""
        return input_batch(images, self.metadata.preprocess, self.metadata.frame)

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's outputs for a batch (:meth:`preprocess`'s) of any size B: run in chunks of the
        graph's largest batch, and a chunk below its smallest (a static batch, or a TensorRT
        profile's minimum) padded with blank images whose outputs are dropped."""
        if self.backend is None:
            raise RetinaEdgeError(f"this Detector of {self.path.name} is closed; make a new one")
        return infer_in_chunks(self.backend, batch, self.metadata.batch)

    def postprocess(self, outputs: dict[str, np.ndarray], infos: list[LetterboxInfo]) -> list[Detections]:
        """Finish what the graph left out, apply the score threshold and map boxes to each source image."""
        return self._finish(outputs, infos)

    def close(self) -> None:
        """Free the backend (sessions, TensorRT contexts, pinned and device buffers); idempotent."""
        backend, self.backend = getattr(self, "backend", None), None
        if backend is not None and hasattr(backend, "close"):
            backend.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
