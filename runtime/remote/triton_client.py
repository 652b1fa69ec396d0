"""``TritonDetector``: the ``Detector`` call against a Triton server serving a retina-edge model.

    from retina_edge.runtime import TritonDetector
    with TritonDetector("triton://gpu-server:8001/retina_edge") as detector:
        detections = detector.detect(rgb_images)            # same result type as Detector

``detect(images)`` sends each image as PNG bytes (lossless: the server sees the same pixels) in its
own request, concurrently, so Triton's dynamic batcher can gather them; ``detect_encoded`` sends
JPEG/PNG bytes as they are (what a camera client has). A served frame graph takes the frames'
pixels instead (uint8 ``images`` of the frame size, in its channel order) and answers with final
detections in frame pixels; encoded images are decoded here for it. The deployment contract
(classes, score threshold, frame input) comes from the served model's config. A server that
cannot be reached is retried with bounded exponential backoff, each retry and the recovery
logged, then reported as one error.
Safe to call from several threads (tritonclient's clients are per thread).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import numpy as np

from retina_edge.contract import INPUT_NAME, DeploymentMetadata, check_score_thresh
from retina_edge.errors import RetinaEdgeError
from retina_edge.optional import require
from retina_edge.runtime.core.detector import as_image_list
from retina_edge.runtime.core.results import Detections

logger = logging.getLogger(__name__)
SCHEME = "triton://"
PROTOCOLS = ("grpc", "http")


def parse_triton_url(url: str) -> tuple[str, str]:
    """``triton://HOST:PORT/MODEL`` -> (``HOST:PORT``, ``MODEL``); the model defaults to retina_edge."""
    parsed = urlparse(url)
    try:
        port = parsed.port  # ValueError for a port that is not a number from 0 to 65535
    except ValueError:
        port = 0
    if parsed.scheme != "triton" or not parsed.hostname or port == 0 or (port is None and parsed.netloc.endswith(":")):
        raise RetinaEdgeError(f"not a Triton address: {url!r} (expected triton://HOST:PORT/MODEL, PORT a number "
                              "from 1 to 65535)")
    return parsed.netloc, parsed.path.strip("/") or "retina_edge"


#: Words of tritonclient errors that mean "not now" (no server, one stopping, or one still loading the
#: model) rather than "never" (a bad request, an unknown model name).
TRANSIENT = ("unavailable", "connect", "refused", "reset", "broken pipe", "eof", "stopping", "no available versions")


def _unreachable(message: str) -> bool:
    """Whether a tritonclient error is worth a retry (see :data:`TRANSIENT`)."""
    return any(word in message.lower() for word in TRANSIENT)


class ServerLostError(RetinaEdgeError):
    """The server did not answer within the retries (the CLI exits 1, as for a lost live source)."""

    exit_code = 1


class ImagesRefusedError(RetinaEdgeError):
    """The server refused some images of a call; ``answers`` holds every image's detections, None
    for the refused ones."""

    def __init__(self, message: str, answers: list[Detections | None]) -> None:
        super().__init__(message)
        self.answers = answers


class TritonDetector:
    """``url``: ``HOST:PORT`` of Triton's gRPC endpoint (``protocol="http"`` for its HTTP one), or
    ``triton://HOST:PORT/MODEL`` (gRPC). ``score_thresh`` may raise the served model's threshold
    (applied here); the server cannot give back boxes below its own. ``retries``/``backoff``:
    attempts after a failed call and the first wait (doubling, at most 8 s)."""

    def __init__(self, url: str, model: str = "retina_edge", *, protocol: str = "grpc", score_thresh: float | None = None,
                 retries: int = 5, backoff: float = 0.5, concurrency: int = 8) -> None:
        if url.startswith(SCHEME):
            url, model = parse_triton_url(url)
        if protocol not in PROTOCOLS:
            raise RetinaEdgeError(f"unknown Triton protocol {protocol!r}; expected one of {PROTOCOLS}")
        self._api = require(f"tritonclient.{protocol}", "TritonDetector")
        self._errors = require("tritonclient.utils", "TritonDetector").InferenceServerException
        self.url, self.model, self.protocol, self.retries, self.backoff = url, model, protocol, retries, backoff
        self._local, self._clients, self._lock = threading.local(), [], threading.Lock()
        self._pool = ThreadPoolExecutor(concurrency)
        self.metadata = self._served_contract()
        self.score_thresh = self._client_threshold(score_thresh)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.metadata.model.class_names

    def _served_contract(self) -> DeploymentMetadata:
        options = {"as_json": True} if self.protocol == "grpc" else {}
        config = self._call(lambda: self._client().get_model_config(self.model, **options))
        config = config.get("config", config)
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        if "deployment" not in parameters:
            raise RetinaEdgeError(f"the model {self.model!r} at {self.url} was not written by 'retina-edge triton' "
                                  "(no deployment parameter)")
        return DeploymentMetadata.from_props(json.loads(parameters["deployment"]), source=f"{self.url}/{self.model}")

    def _client_threshold(self, score_thresh: float | None) -> float | None:
        if score_thresh is None:
            return None
        check_score_thresh(score_thresh)
        served = self.metadata.score_thresh
        if score_thresh < served:
            raise RetinaEdgeError(f"the served model keeps scores above {served}; a lower score threshold "
                                  f"({score_thresh}) needs a model exported with it", option="score_thresh")
        return score_thresh

    def _client(self):  # noqa: ANN202
        """This thread's client (tritonclient's HTTP client is bound to the thread that made it)."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._api.InferenceServerClient(self.url)
            with self._lock:
                self._clients.append(client)
        return client

    def _call(self, function):  # noqa: ANN001, ANN202
        """``function()``, retried with bounded exponential backoff while the server cannot be reached."""
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                result = function()
            except self._errors as error:
                if not _unreachable(str(error)):
                    raise RetinaEdgeError(f"Triton at {self.url} refused the request: {error.message()}") from None
                reason = str(error).splitlines()[0][:200]
            except OSError as error:
                reason = str(error)
            else:
                if attempt:
                    logger.warning("Triton at %s answered again after %d retries", self.url, attempt)
                return result
            if attempt < self.retries:
                logger.warning("Triton at %s unreachable (%s); retry %d/%d in %.1f s", self.url, reason, attempt + 1,
                               self.retries, delay)
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
        raise ServerLostError(f"Triton at {self.url} did not answer after {self.retries} retries: {reason}")

    def _infer(self, data: bytes) -> Detections:
        tensor = self._api.InferInput("image", [1, len(data)], "UINT8")
        tensor.set_data_from_numpy(np.frombuffer(data, np.uint8)[None])
        result = self._call(lambda: self._client().infer(self.model, [tensor]))
        found = Detections(result.as_numpy("boxes")[0], result.as_numpy("scores")[0],
                           result.as_numpy("labels")[0].astype(np.int64), self.class_names, self.metadata.model.category_ids)
        return found if self.score_thresh is None else found.filter(score_thresh=self.score_thresh)

    def _infer_frame(self, image: np.ndarray) -> Detections:
        """One frame through a served frame graph: its pixels in, final detections out."""
        from retina_edge.preprocess import frame_batch
        from retina_edge.runtime.core.finish import Finisher

        batch, infos = frame_batch([image], self.metadata.frame)
        tensor = self._api.InferInput(INPUT_NAME, list(batch.shape), "UINT8")
        tensor.set_data_from_numpy(batch)
        result = self._call(lambda: self._client().infer(self.model, [tensor]))
        found = Finisher(self.metadata)({name: result.as_numpy(name) for name in self.metadata.output_names}, infos)[0]
        return found if self.score_thresh is None else found.filter(score_thresh=self.score_thresh)

    def detect_encoded(self, encoded: Sequence[bytes]) -> list[Detections]:
        """Detections for JPEG/PNG bytes, one request each, sent concurrently. Images the server
        refuses raise :class:`ImagesRefusedError` once all are answered, carrying the others' answers."""
        if self.metadata.frame is not None:
            from retina_edge.imageio import decode_image_bytes

            return self.detect([decode_image_bytes(data, source=f"image {index}") for index, data in enumerate(encoded)])
        return self._gather([self._pool.submit(self._infer, data) for data in encoded])

    def _gather(self, futures: list) -> list[Detections]:
        """Every request's answer, in order; refused ones raise :class:`ImagesRefusedError` at the end."""
        answers: list[Detections | None] = []
        refused: list[tuple[int, RetinaEdgeError]] = []
        for index, future in enumerate(futures):
            try:
                answers.append(future.result())
            except ServerLostError:
                raise
            except RetinaEdgeError as error:
                answers.append(None)
                refused.append((index, error))
        if refused:
            index, first = refused[0]
            raise ImagesRefusedError(f"{len(refused)} of {len(futures)} images refused; image {index}: {first}", answers)
        return answers

    def detect(self, images: Sequence[np.ndarray] | np.ndarray) -> list[Detections]:
        """The :class:`Detector` call: ``(H, W, 3)`` uint8 RGB images -> detections in their pixels."""
        from retina_edge.imageio import encode_image_rgb

        images = as_image_list(images)
        if self.metadata.frame is not None:
            from retina_edge.preprocess import check_frame

            for index, image in enumerate(images):  # a frame of another size is refused before anything is sent
                check_frame(image, self.metadata.frame, index)
            return self._gather([self._pool.submit(self._infer_frame, image) for image in images])
        return self.detect_encoded([encode_image_rgb(image, ".png", target=f"an image of shape {image.shape}")
                                    for image in images])

    __call__ = detect

    def close(self) -> None:
        """Close the connections; idempotent."""
        self._pool.shutdown()
        with self._lock:
            for client in self._clients:
                client.close()
            self._clients.clear()

    def __enter__(self) -> TritonDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
