"""``Detector``: a deployed RetinaNet (ONNX or TensorRT engine) from images to detections, no torch.

    from retina_edge.runtime import Detector
    detector = Detector("synth-int8-cpu.onnx")            # backend and settings from the file
    for det in detector.detect([rgb_image])[0]:            # (H, W, 3) uint8 RGB
        print(det.name, det.score, det.box)                # box x1y1x2y2 in source pixels

Preprocessing, classes, anchors and thresholds come from the model's metadata; the host finishes
what the graph left out (anchor decoding for ``none`` graphs, NMS for ``none``/``decode`` graphs).

Thread safety: ``detect`` may be called from several threads at once. ONNX Runtime sessions and
OpenVINO (one infer request per call) run concurrently; the TensorRT backend serialises calls on
its one execution context. Pre- and post-processing hold no shared mutable state.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from retina_edge.anchors import feature_shapes_for, grid_anchors
from retina_edge.contract import DeploymentMetadata, max_batch
from retina_edge.errors import RetinaEdgeError
from retina_edge.preprocess import LetterboxInfo, boxes_to_source, preprocess_batch
from retina_edge.runtime.postprocess import candidates_from_raw, select_detections
from retina_edge.runtime.results import Detections

BACKENDS = ("auto", "onnxruntime", "openvino", "tensorrt")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def _available(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def choose_backend(path: str | os.PathLike, requested: str) -> str:
    """The backend for ``path``: engines need TensorRT; ONNX prefers ONNX Runtime, then OpenVINO."""
    if requested not in BACKENDS:
        raise RetinaEdgeError(f"unknown backend {requested!r}; expected one of {BACKENDS}")
    is_engine = Path(path).suffix.lower() in ENGINE_SUFFIXES
    if is_engine:
        if requested not in ("auto", "tensorrt"):
            raise RetinaEdgeError(f"{path} is a TensorRT engine: only the tensorrt backend can run it")
        return "tensorrt"
    if requested == "tensorrt":
        raise RetinaEdgeError(f"{path} is an ONNX model: build an engine from it first ('retina-edge build --backend tensorrt'),"
                              " or run it with --backend onnxruntime (its TensorRT execution provider: --device tensorrt)")
    if requested != "auto":
        return requested
    for backend, module in (("onnxruntime", "onnxruntime"), ("openvino", "openvino")):
        if _available(module):
            return backend
    raise RetinaEdgeError("no ONNX backend is installed: pip install onnxruntime (or openvino)")


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """``metadata_props`` of an ONNX file, through onnx if installed, else ONNX Runtime."""
    if not Path(path).is_file():
        raise RetinaEdgeError(f"model file not found: {path}")
    if _available("onnx"):
        import onnx

        try:
            graph = onnx.load(str(path), load_external_data=False)
        except Exception as error:  # protobuf decode errors for damaged files
            raise RetinaEdgeError(f"cannot read ONNX model {path}: {error}") from None
        return {p.key: p.value for p in graph.metadata_props}
    import onnxruntime as ort

    return dict(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map)


class Detector:
    """Load a deployed model; ``detect(images)`` returns one :class:`Detections` per image.

    ``backend``: auto, onnxruntime, openvino or tensorrt. ``device``: ``cpu``/``cuda``/``tensorrt``
    for ONNX Runtime, ``CPU``/``GPU`` for OpenVINO. ``metadata`` overrides (or, for ONNX files made
    by other tools, supplies) what the file says. ``score_thresh`` overrides the model's threshold.
    """

    def __init__(
        self, path: str | os.PathLike, *, backend: str = "auto", device: str | None = None, threads: int | None = None,
        metadata: DeploymentMetadata | None = None, score_thresh: float | None = None, openvino_precision: str = "f32",
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise RetinaEdgeError(f"model file not found: {self.path}")
        self.backend_name = choose_backend(self.path, backend)
        self.backend, props = self._load_backend(device, threads, openvino_precision)
        self.metadata = metadata or DeploymentMetadata.from_props(props, source=str(self.path))
        if score_thresh is not None:
            post = dataclasses.replace(self.metadata.model.postprocess, score_thresh=score_thresh)
            self.metadata = dataclasses.replace(self.metadata, model=dataclasses.replace(self.metadata.model, postprocess=post))
        missing = set(self.metadata.output_names) - set(self.backend.output_names)
        if missing:
            raise RetinaEdgeError(f"{self.path} lacks the outputs {sorted(missing)} its metadata promises")
        self.max_batch = max_batch(props)
        self._level_anchors = None
        if self.metadata.postprocess == "none":
            size = self.input_size
            self._level_anchors = grid_anchors(feature_shapes_for(size), size, self.metadata.model.anchors)

    def _load_backend(self, device: str | None, threads: int | None, openvino_precision: str):  # noqa: ANN202
        if self.backend_name == "tensorrt":
            from retina_edge.runtime.backends.tensorrt_backend import TensorRTBackend

            backend = TensorRTBackend(self.path)
            return backend, backend.metadata
        if self.backend_name == "onnxruntime":
            from retina_edge.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

            backend = OnnxRuntimeBackend(self.path, device=device or "cpu", threads=threads)
            return backend, backend.metadata
        from retina_edge.runtime.backends.openvino_backend import OpenVinoBackend

        backend = OpenVinoBackend(self.path, device=device or "CPU", precision=openvino_precision, threads=threads)
        return backend, read_onnx_metadata(self.path)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.metadata.preprocess.height, self.metadata.preprocess.width

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.metadata.model.class_names

    def detect(self, images: Sequence[np.ndarray] | np.ndarray) -> list[Detections]:
        """Detections of each ``(H, W, 3)`` uint8 RGB image (a list, or one image -> a list of one)."""
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        results: list[Detections] = []
        for start in range(0, len(images), self.max_batch):
            chunk = list(images[start : start + self.max_batch])
            batch, infos = preprocess_batch(chunk, self.metadata.preprocess)
            results.extend(self.postprocess(self.backend.run(batch), infos))
        return results

    __call__ = detect

    def postprocess(self, outputs: dict[str, np.ndarray], infos: list[LetterboxInfo]) -> list[Detections]:
        """Finish what the graph left out and map boxes to each source image."""
        config = self.metadata.model.postprocess
        detections = []
        for index, info in enumerate(infos):
            if self.metadata.postprocess == "nms":
                count = int(outputs["num_detections"][index].reshape(-1)[0])
                boxes = outputs["det_boxes"][index][:count]
                scores = outputs["det_scores"][index][:count]
                labels = outputs["det_labels"][index][:count]
            else:
                if self.metadata.postprocess == "none":
                    candidates = candidates_from_raw(
                        outputs["cls_logits"][index], outputs["bbox_regression"][index], self._level_anchors,
                        config=config, box_coder=self.metadata.model.box_coder, input_size=self.input_size,
                    )
                else:
                    candidates = (outputs["boxes"][index], outputs["scores"][index], outputs["labels"][index])
                boxes, scores, labels = select_detections(*candidates, config)
            detections.append(Detections(boxes_to_source(boxes, info), scores.astype(np.float32),
                                         labels.astype(np.int64), self.class_names))
        return detections
