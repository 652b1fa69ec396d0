"""Precision in the graph: FP16 (ModelOpt AutoCast) and INT8 QDQ for CPUs (ONNX Runtime), plus the
legacy TensorRT calibration cache; the TensorRT-placement Q/DQ graph is :mod:`retina_edge.calib.tensorrt_qdq`.
All INT8 products come from one set of statistics.

Which nodes stay in FP32 is decided by name: the exporter names the network's nodes after its
modules (``/backbone/...``, ``/head/...``); everything else is the sigmoid/top-k/decode/NMS tail
of :mod:`retina_edge.export.graph_heads`, which is kept FP32 (and not calibrated).
``keep_predictors`` also keeps the final classification and box convs (``cls_logits``,
``bbox_reg``) in high precision.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import struct
from pathlib import Path

from retina_edge.atomic import atomic_path, write_text_atomic
from retina_edge.calib.statistics import ActivationStats, int8_scale
from retina_edge.contract import NETWORK_SCOPES
from retina_edge.errors import RetinaEdgeError
from retina_edge.optional import require

PREDICTOR_PATTERNS = ("cls_logits", "bbox_reg")
#: Tail nodes (outside the network scopes), as a regex for ModelOpt.
TAIL_REGEX = "^(?!" + "|".join(map(re.escape, NETWORK_SCOPES)) + ").*$"
#: TensorRT 10.3 (JetPack 6) writes cache headers as TRT-<major*10000+minor*100+patch>-...; the
#: engine build rewrites the header to the TensorRT that reads it (trt_plan.legacy_calibration_cache).
DEFAULT_TRT_CACHE_VERSION = 100300


def excluded_nodes(onnx_path: str | os.PathLike, *, keep_predictors: bool) -> list[str]:
    """Names of the nodes to keep in FP32: the post-network tail, and optionally the predictors."""
    graph = require("onnx", "precision conversion").load(str(onnx_path), load_external_data=False).graph
    names = []
    for node in graph.node:
        tail = not node.name.startswith(NETWORK_SCOPES)
        predictor = keep_predictors and any(p in node.name for p in PREDICTOR_PATTERNS)
        if tail or predictor:
            names.append(node.name)
    return names


def write_trt_calibration_cache(stats: ActivationStats, path: str | os.PathLike, *, trt_version: int = DEFAULT_TRT_CACHE_VERSION) -> Path:
    """TensorRT-format INT8 calibration cache (implicit quantization, TensorRT <= 10 / DeepStream).

    One line per tensor: ``name: <big-endian float32 scale as hex>``, scale = amax / 127.
    """
    algorithm = "EntropyCalibration2" if stats.method == "entropy" else "MinMaxCalibration"
    lines = [f"TRT-{trt_version}-{algorithm}"]
    for name in sorted(stats.ranges):
        scale = int8_scale(stats.amax(name))
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    write_text_atomic(path, "\n".join(lines) + "\n")
    return Path(path)


def read_trt_calibration_cache(path: str | os.PathLike) -> dict[str, float]:
    """Scales of a TensorRT calibration cache (tensor name -> float32 scale)."""
    lines = Path(path).read_text().splitlines()
    if not lines or not lines[0].startswith("TRT-"):
        raise RetinaEdgeError(f"{path} is not a TensorRT calibration cache (no TRT-... header)")
    scales = {}
    for line in lines[1:]:
        name, _, value = line.rpartition(": ")
        scales[name] = struct.unpack(">f", bytes.fromhex(value))[0]
    return scales


def quantize_for_cpu(fp32_onnx: str | os.PathLike, stats: ActivationStats, output: str | os.PathLike, *, exclude: list[str]) -> Path:
    """ONNX Runtime CPU-placement QDQ graph: U8 activations, S8 per-channel weights, from ``stats``."""
    import numpy as np

    require("onnxruntime", "INT8 for CPUs")
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    method = CalibrationMethod.Entropy if stats.method == "entropy" else CalibrationMethod.MinMax
    ranges = TensorsData(method, {name: TensorData(lowest=np.float32(low), highest=np.float32(high))
                                  for name, (low, high) in stats.ranges.items()})
    model = load_model_with_shape_infer(Path(fp32_onnx))
    quantizer = QDQQuantizer(
        model, True, False, QuantType.QInt8, QuantType.QUInt8, ranges, [], exclude, ["Conv", "MatMul", "Gemm"],
        {"ActivationSymmetric": False, "WeightSymmetric": True},
    )
    quantizer.quantize_model()
    with atomic_path(output) as tmp:
        quantizer.model.save_model_to_file(str(tmp))
    return Path(output)


def convert_fp16(fp32_onnx: str | os.PathLike, output: str | os.PathLike) -> Path:
    """FP16 graph by ModelOpt AutoCast: FP32 inputs/outputs, the post-network tail kept FP32."""
    from retina_edge.export.graph_weights import write_model

    convert_to_mixed_precision = require("modelopt.onnx.autocast", "FP16 conversion").convert_to_mixed_precision
    with _quiet("modelopt", root=True):
        model = convert_to_mixed_precision(str(fp32_onnx), low_precision_type="fp16", nodes_to_exclude=[TAIL_REGEX],
                                           keep_io_types=True, providers=["cpu"])
    with atomic_path(output) as tmp:
        write_model(model, tmp)
    return Path(output)


@contextlib.contextmanager
def _quiet(prefix: str, *, root: bool = False):
    """Silence a library's INFO chatter (per-node logs, unlabelled progress bars on stdout or stderr)
    during a call, which our own labelled log lines replace; ``root`` also quiets the root logger,
    which some libraries (onnxconverter-common) log to directly. Exceptions still propagate."""
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict) if name.startswith(prefix)]
    loggers.append(logging.getLogger(prefix))
    if root:
        loggers.append(logging.getLogger())
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
