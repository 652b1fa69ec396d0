"""What every inference backend is (:class:`Backend`) and the one options object that loads one
(:class:`BackendOptions`); no engine is imported here.

A backend runs a ``(B, 3, H, W)`` float32 batch through a deployed graph and returns its outputs
by name; ``close()`` frees what it holds and is idempotent.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from retina_edge.errors import RetinaEdgeError
from retina_edge.resources import bound_threads

logger = logging.getLogger(__name__)


@runtime_checkable
class Backend(Protocol):
    """A loaded graph. ``input_name``: its one input; ``output_names``: what ``run`` returns."""

    name: str
    input_name: str
    output_names: tuple[str, ...]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class BackendOptions:
    """How to load a backend; each backend reads the fields that apply to it.

    ``device``: the backend's own device name (ONNX Runtime ``cpu``/``cuda``/``tensorrt``, OpenVINO
    ``CPU``/``GPU``; None: its default). ``threads``: CPU threads (None: the backend's default; more
    than the process's usable cores are bounded to them, with a warning, for every caller alike).
    ``precision_hint``: the inference precision a backend may run an FP32 graph in (OpenVINO's
    ``f32``/``bf16``/``f16``; ``f32`` matches the reference). ``cuda_graph``: replay each batch
    size's copies and inference as one captured CUDA graph (TensorRT). ``streams``: inferences that
    can run at once, or ``"auto"`` for :class:`~retina_edge.runtime.core.detector.Detector` to measure.
    """

    device: str | None = None
    threads: int | None = None
    precision_hint: str = "f32"
    cuda_graph: bool = False
    streams: int | str = 1

    def __post_init__(self) -> None:
        if self.streams != "auto" and (not isinstance(self.streams, int) or self.streams < 1):
            raise RetinaEdgeError(f"streams must be 'auto' or at least 1, got {self.streams!r}")
        if self.threads is not None:
            if not isinstance(self.threads, int) or isinstance(self.threads, bool) or self.threads < 1:
                raise RetinaEdgeError(f"threads must be a whole number of at least 1, got {self.threads!r}",
                                      option="threads")
            threads, note = bound_threads(self.threads)
            if note:  # a thread pool larger than the cores only contends: 100000 asked of ONNX Runtime
                logger.warning("threads: %s", note)  # started 18.7k threads and took 16.5 GB before it failed
            object.__setattr__(self, "threads", threads)

    def replace(self, **changes: object) -> BackendOptions:
        return dataclasses.replace(self, **changes)

    def speed_settings(self) -> dict:
        """The settings that change a backend's speed, as the measured choices' cache keys name them."""
        return {"device": self.device, "threads": self.threads, "openvino_precision": self.precision_hint}

