"""Inference backends: each runs a batch through a deployed graph and returns outputs by name.

A backend has ``name``, ``input_name``, ``output_names`` and ``run(batch) -> {name: array}`` for a
``(B, 3, H, W)`` float32 batch. Optional engines are imported only when their backend is built.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Backend(Protocol):
    name: str
    output_names: tuple[str, ...]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...
