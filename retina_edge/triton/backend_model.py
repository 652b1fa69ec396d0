"""Triton Python-backend model for retina-edge (copied into a model repository as ``1/model.py`` by
``retina-edge triton``; it runs inside Triton's Python stub, not in this package).

One file, four roles, chosen by the ``role`` parameter of the model's ``config.pbtxt``:

- ``detect`` (the default repository): each request's ``image`` is the encoded JPEG/PNG bytes of
  one image (``TYPE_UINT8``, ragged); the requests Triton's dynamic batcher gathers are decoded
  and run through one ``Detector.detect`` call; each is answered with ``boxes`` (K, 4) float32
  x1y1x2y2 source pixels, ``scores`` (K,) float32 and ``labels`` (K,) int32. A request whose
  bytes do not decode gets an error response of its own; the others are answered.
- ``preprocess``, ``network``, ``postprocess`` (``--ensemble``): the same work split around a
  network model; ``preprocess`` gives ``images`` (3, H, W) and ``source_size`` (H, W) per request,
  ``postprocess`` turns the network's outputs and ``source_size`` into boxes/scores/labels, and
  ``network`` runs the graph through the runtime for Triton builds without the ONNX Runtime or
  TensorRT backends.

Every role reads the deployment contract from the ``deployment`` parameter.
"""

from __future__ import annotations

import ctypes
import json
import os
import site
import sys
from pathlib import Path


def _add_site_packages() -> None:
    """Triton's Python stub embeds its own interpreter, which ignores PYTHONPATH: ``retina-edge
    serve`` names its environment's site-packages in ``RETINA_EDGE_SITE_PACKAGES`` (unset on a
    server whose stub Python has retina-edge installed, as in NVIDIA's containers)."""
    before = list(sys.path)
    for folder in filter(None, os.environ.get("RETINA_EDGE_SITE_PACKAGES", "").split(os.pathsep)):
        site.addsitedir(folder)  # runs its .pth files too (editable installs)
    sys.path[:] = [p for p in sys.path if p not in before] + before  # ours first


_add_site_packages()

import numpy as np  # noqa: E402

OUTPUT_TYPES = (("boxes", np.float32), ("scores", np.float32), ("labels", np.int32))
# DLPack's name for a consumed capsule. Triton's stub renames the capsules it takes "used_dlpack", so
# NumPy's capsule destructor takes them for unconsumed ones and prints a traceback per tensor. The
# name is kept alive here because PyCapsule_SetName stores the pointer, not a copy.
_CONSUMED = b"used_dltensor"
_set_capsule_name = ctypes.pythonapi.PyCapsule_SetName
_set_capsule_name.argtypes = (ctypes.py_object, ctypes.c_char_p)


def c_order(array: np.ndarray) -> np.ndarray:
    """``array`` (C-contiguous) with the strides C order gives its shape; NumPy gives arrays with no
    elements all-zero strides, which Triton's stub refuses ("DLPack tensor is not contiguous")."""
    strides, step = [], array.itemsize
    for side in reversed(array.shape):
        strides.insert(0, step)
        step *= side
    return np.lib.stride_tricks.as_strided(array, strides=tuple(strides)) if array.size == 0 else array


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        from retina_edge.contract import DeploymentMetadata

        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.role = parameters["role"]
        self.metadata = DeploymentMetadata.from_props(json.loads(parameters["deployment"]), source=config["name"])
        self.output_names = [output["name"] for output in config.get("output", [])]
        folder = Path(args["model_repository"]) / args["model_version"]
        self.detector = self.backend = self.finish = None
        if self.role == "detect":
            from retina_edge.runtime import Detector

            self.detector = Detector(folder / parameters["model_file"], backend=parameters.get("backend", "auto"))
        elif self.role == "network":
            from retina_edge.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

            self.backend = OnnxRuntimeBackend(folder / parameters["model_file"], device="cpu", threads=None)
        elif self.role == "postprocess":
            from retina_edge.runtime.core.finish import Finisher

            self.finish = Finisher(self.metadata)

    def execute(self, requests: list) -> list:
        import triton_python_backend_utils as pb_utils  # provided by Triton's Python stub

        return getattr(self, f"_{self.role}")(requests, pb_utils)

    # dlpack both ways: the stub's as_numpy()/Tensor(numpy) were built for NumPy 1 and garble NumPy 2 arrays
    @staticmethod
    def _input(pb_utils, request, name: str) -> np.ndarray:  # noqa: ANN001
        return np.from_dlpack(pb_utils.get_input_tensor_by_name(request, name))

    @staticmethod
    def _tensor(pb_utils, name: str, value: np.ndarray):  # noqa: ANN001, ANN205
        capsule = c_order(np.ascontiguousarray(value)[None]).__dlpack__()
        tensor = pb_utils.Tensor.from_dlpack(name, capsule)
        _set_capsule_name(capsule, _CONSUMED)  # the stub owns the tensor now (see _CONSUMED)
        return tensor

    @classmethod
    def _response(cls, pb_utils, arrays: dict[str, np.ndarray]):  # noqa: ANN001, ANN206
        return pb_utils.InferenceResponse(output_tensors=[cls._tensor(pb_utils, name, value) for name, value in arrays.items()])

    def _decode(self, requests: list, pb_utils) -> tuple[list, list, list]:  # noqa: ANN001
        """(responses with errors filled in, decoded images, the request slot of each image)."""
        from retina_edge.errors import RetinaEdgeError
        from retina_edge.imageio import decode_image_bytes

        responses, images, slots = [None] * len(requests), [], []
        for slot, request in enumerate(requests):
            data = self._input(pb_utils, request, "image").reshape(-1)
            try:
                images.append(decode_image_bytes(data.tobytes(), source=f"the request's {data.size} bytes"))
                slots.append(slot)
            except RetinaEdgeError as error:
                responses[slot] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error)))
        return responses, images, slots

    def _answer(self, found) -> dict[str, np.ndarray]:  # noqa: ANN001
        return {name: getattr(found, name).astype(dtype) for name, dtype in OUTPUT_TYPES}

    def _detect(self, requests: list, pb_utils) -> list:  # noqa: ANN001
        responses, images, slots = self._decode(requests, pb_utils)
        for slot, found in zip(slots, self.detector.detect(images) if images else []):
            responses[slot] = self._response(pb_utils, self._answer(found))
        return responses

    def _preprocess(self, requests: list, pb_utils) -> list:  # noqa: ANN001
        from retina_edge.preprocess import preprocess_image

        responses, images, slots = self._decode(requests, pb_utils)
        for slot, image in zip(slots, images):
            tensor, _ = preprocess_image(image, self.metadata.preprocess)
            responses[slot] = self._response(pb_utils, {"images": tensor, "source_size": np.array(image.shape[:2], np.int32)})
        return responses

    def _network(self, requests: list, pb_utils) -> list:  # noqa: ANN001
        batch = np.concatenate([self._input(pb_utils, request, "images") for request in requests])
        outputs = self.backend.run(batch)
        return [self._response(pb_utils, {name: outputs[name][index] for name in self.output_names})
                for index in range(len(requests))]

    def _postprocess(self, requests: list, pb_utils) -> list:  # noqa: ANN001
        from retina_edge.preprocess import letterbox_geometry

        names = self.metadata.output_names
        outputs = {name: np.concatenate([self._input(pb_utils, request, name) for request in requests]) for name in names}
        infos = [letterbox_geometry(tuple(int(v) for v in self._input(pb_utils, request, "source_size").reshape(-1)),
                                    self.metadata.preprocess) for request in requests]
        return [self._response(pb_utils, self._answer(found)) for found in self.finish(outputs, infos)]

    def finalize(self) -> None:
        for runtime in (self.detector, self.backend):
            if runtime is not None and hasattr(runtime, "close"):
                runtime.close()
