"""Activation statistics: one calibration pass (:mod:`retina_edge.calib.activations`), cached on disk.

The statistics (per-tensor ``(low, high)`` ranges from ``max`` or ``entropy`` calibration) feed
every INT8 product: the TensorRT-placement Q/DQ graph (ModelOpt's placement), ONNX Runtime's CPU-placement QDQ
graph and the legacy TensorRT calibration cache. They are cached under a key made of the FP32
graph, the preprocessing, the calibration images and the method, so a rebuild with other options
(placement, excluded nodes, target) does not run calibration again.

**Why ``max`` is the default, not ``entropy``** (issue 30, measured on ``preset:synth``: calibrate on
128 train images, verify on 200 val images, 95% paired intervals): entropy lost 1.57 AP points
[0.74, 2.27] (TensorRT placement) and 1.58 [0.82, 2.29] (CPU placement). ``entropy`` here is ONNX
Runtime's ``EntropyCalibrater``, which ModelOpt's ONNX PTQ also uses unchanged (both default to
128 histogram bins and 128 quantized bins): the histogram starts at the first image's range and
widens by whole bins as larger values arrive, and the KL search only tries thresholds from that
first range out to the widened one, in bins one first-image-width/64 wide. So the threshold is a
coarse, order- and count-dependent cut between the first image's maximum and the overall one
(more calibration images, more widening, more clipping), unlike TensorRT's own entropy
calibrator (2,048 bins over the full range). On the preset it clipped 68% of the 242 tensors below
0.9 of their maximum (median 0.82, down to 0.30), the regression head's ReLU outputs among the
worst: box precision pays (AP50 moved by only -0.22 [-0.63, +0.25] and -0.35 [-1.12, +0.38]
points; the loss is at the high IoU thresholds). ``max`` clips nothing.

Only the network is calibrated (the nodes in :data:`retina_edge.contract.NETWORK_SCOPES`): the
decode/NMS tail stays FP32 anyway, and its tensors change shape from image to image (NMS keeps a
varying number of boxes), which the histogram collector cannot merge.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from retina_edge.atomic import write_text_atomic
from retina_edge.contract import INPUT_NAME, NETWORK_SCOPES
from retina_edge.errors import RetinaEdgeError
from retina_edge.preprocess import PreprocessConfig

if TYPE_CHECKING:
    import onnx

METHODS = ("entropy", "max")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActivationStats:
    """``ranges``: tensor name -> (low, high) float range; ``method``: how they were computed."""

    method: str
    ranges: dict[str, tuple[float, float]]
    num_images: int

    def amax(self, name: str) -> float:
        """Symmetric range |x| <= amax of a tensor (what TensorRT's per-tensor scales use)."""
        low, high = self.ranges[name]
        return max(abs(low), abs(high))

    def to_json(self) -> str:
        ranges = {name: [float(low), float(high)] for name, (low, high) in self.ranges.items()}
        return json.dumps({"method": self.method, "num_images": self.num_images, "ranges": ranges})

    @classmethod
    def from_json(cls, text: str) -> ActivationStats:
        data = json.loads(text)
        return cls(data["method"], {k: (v[0], v[1]) for k, v in data["ranges"].items()}, data["num_images"])


def int8_scale(amax):  # noqa: ANN001, ANN201 (float or np.ndarray)
    """Symmetric INT8 scale (zero point 0) of the range ``|x| <= amax``: ``amax / 127``, never 0.
    ``amax`` is one tensor's (per-tensor scale) or an array of them (per output channel); the one
    formula behind the TensorRT calibration cache and the TensorRT-placement Q/DQ graph, which
    must agree to the bit."""
    return np.maximum(amax, 1e-12) / 127.0


#: Part of the cache key: bumped when what a tensor contributes changes, so older cached statistics
#: are recomputed rather than mixed in. 2: tensors of unknown static shape are sampled like the rest.
STATISTICS_VERSION = 2


def stats_key(onnx_path: str | os.PathLike, preprocess: PreprocessConfig, item_keys: Iterable[str], method: str) -> str:
    """Cache key: hash of the graph file, the preprocessing, the ordered image list and the method."""
    digest = hashlib.sha256()
    with open(onnx_path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    digest.update(json.dumps(preprocess.to_dict(), sort_keys=True).encode())
    for key in item_keys:
        digest.update(key.encode() + b"\0")
    digest.update(method.encode())
    digest.update(f"statistics v{STATISTICS_VERSION}".encode())
    return digest.hexdigest()[:32]


def _fixed_batch(graph: onnx.GraphProto) -> int | None:
    """The graph's static batch size, or None when the batch axis is dynamic."""
    dim = graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.dim_value > 0 else None


def compute_stats(onnx_path: str | os.PathLike, batches: Iterable[np.ndarray], *, method: str) -> ActivationStats:
    """Run every batch through the FP32 graph's network and collect each tensor's range with ``method``
    (:mod:`retina_edge.calib.activations`: reductions in the graph, one image at a time)."""
    from retina_edge.calib.activations import ActivationProbe, RangeCollector

    if method not in METHODS:
        raise RetinaEdgeError(f"unknown calibration method {method!r}; expected one of {METHODS}")
    used = 0
    collector = RangeCollector(method)
    with tempfile.TemporaryDirectory(prefix="retina-edge-calib-") as scratch:
        fixed = network_subgraph(onnx_path, Path(scratch) / "network.onnx")
        probe, pending = None, None
        # One image per run (a static-batch graph: its full batches only, its only shape): memory
        # is one inference's, whatever the calibration batch size. A run's values are merged in
        # a second thread while the next image runs (in order: merges are order-dependent).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="retina-edge-calib") as merger:
            for batch in batches:
                arrays = [batch[i : i + 1] for i in range(len(batch))] if fixed is None else [batch] if len(batch) == fixed else []
                for array in arrays:
                    probe = probe or ActivationProbe(Path(scratch) / "network.onnx", method, array)
                    values = probe.run(array)
                    if pending is not None:
                        pending.result()
                    pending = merger.submit(collector.add, values)
                    used += len(array)
            if pending is not None:
                pending.result()
    if not used:
        raise RetinaEdgeError("no calibration batch fitted the graph's batch size")
    return ActivationStats(method, collector.ranges(), used)


def network_subgraph(onnx_path: str | os.PathLike, output: Path) -> int | None:
    """Write the network part of a graph to ``output`` (the input up to the tensors the tail reads,
    names unchanged; a graph without a tail whole), its weights in a file beside it
    (:mod:`retina_edge.export.graph_weights`: the graphs the probe derives from it then share that
    file instead of each holding the weights); returns its static batch size, None if dynamic."""
    import onnx.utils

    from retina_edge.export.graph_weights import move_weights_out

    model = move_weights_out(onnx_path, output.with_name("fp32.onnx"))
    outputs = network_output_names(model.graph)
    if not outputs:
        raise RetinaEdgeError(f"{onnx_path} has no nodes under {NETWORK_SCOPES}: not a graph retina-edge exported")
    network = onnx.utils.Extractor(model).extract_model([INPUT_NAME], outputs)
    onnx.save(network, str(output))
    return _fixed_batch(model.graph)


def network_output_names(graph: onnx.GraphProto) -> list[str]:
    """The tensors the network hands to the tail (or the graph's outputs, without a tail): what
    the nodes under :data:`NETWORK_SCOPES` produce and anything else reads."""
    in_network = [node.name.startswith(NETWORK_SCOPES) for node in graph.node]
    produced = {name for node, inside in zip(graph.node, in_network) if inside for name in node.output}
    read_outside = {name for node, inside in zip(graph.node, in_network) if not inside for name in node.input}
    return sorted(produced & (read_outside | {o.name for o in graph.output}))


def load_or_compute_stats(key: str, cache_dir: Path, compute) -> tuple[ActivationStats, bool]:  # noqa: ANN001
    """Statistics from ``cache_dir/key.json``, or ``compute()`` and cache them. Returns (stats, was_cached)."""
    path = cache_dir / f"{key}.json"
    if path.is_file():
        try:
            return ActivationStats.from_json(path.read_text()), True
        except (OSError, ValueError, KeyError):
            pass  # an unreadable, foreign or damaged file: recompute and replace it
    stats = compute()
    try:
        write_text_atomic(path, stats.to_json())
    except OSError as error:  # only a cache: a full or read-only cache folder must not fail the build
        logger.warning("could not cache the calibration statistics in %s (%s); continuing without the cache",
                       cache_dir, error.strerror or error)
    return stats, False
