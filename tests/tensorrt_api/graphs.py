"""The graphs the TensorRT API tier builds engines from: FP32, FP16 and INT8 (TensorRT placement)
graphs of a tiny RetinaNet with none/decode/nms tails, made once per test session (they do not
depend on the TensorRT version), with the INT8 build's legacy calibration cache; and one INT8
graph made by quantization-aware training (``retina-edge qat``, one iteration)."""

from __future__ import annotations

import os
from pathlib import Path

PRECISIONS = ("fp32", "fp16", "int8")
TAILS = ("none", "decode", "nms")
ENV_GRAPHS = "RETINA_EDGE_TRT_GRAPHS"  # set by the outer test: the folder already made
INPUT = (64, 96)
BATCH = (1, 2, 4)


def graph_path(folder: Path, precision: str, tail: str) -> Path:
    return folder / f"{precision}-{tail}.onnx"


def qat_graph_path(folder: Path) -> Path:
    return folder / "int8-qat-decode.onnx"


def make_graphs(folder: Path) -> Path:
    """Write the nine graphs (and ``int8-*.calib.cache``) and the QAT graph into ``folder``; reused when complete."""
    if all(graph_path(folder, p, t).is_file() for p in PRECISIONS for t in TAILS) and qat_graph_path(folder).is_file():
        return folder
    from tiny import tiny_model

    from retina_edge.calib.build import BuildOptions, CalibrationOptions, build_precision_graph
    from retina_edge.export.onnx_export import ExportOptions
    from retina_edge.imageio import write_image_rgb
    from retina_edge.preprocess import PreprocessConfig
    from retina_edge.data.synth import SynthConfig, render_image

    for index in range(8):
        write_image_rgb(folder / "calib" / f"{index}.jpg", render_image(SynthConfig(seed=2), index)[0])
    model = tiny_model()
    for precision in PRECISIONS:
        calibration = CalibrationOptions(str(folder / "calib"), count=8, min_images=8, cache_dir=folder / "stats") \
            if precision == "int8" else None
        for tail in TAILS:
            build_precision_graph(model, graph_path(folder, precision, tail), export=ExportOptions(preprocess=PreprocessConfig(*INPUT), tail=tail, batch=BATCH), build=BuildOptions(precision=precision, target="tensorrt", calibration=calibration))
    _make_qat_graph(folder)
    return folder


def _make_qat_graph(folder: Path) -> None:
    from tiny import tiny_model

    from retina_edge.calib.build import CalibrationOptions
    from retina_edge.data.synth import CLASSES, SynthConfig, write_dataset
    from retina_edge.export.onnx_export import ExportOptions
    from retina_edge.preprocess import PreprocessConfig
    from retina_edge.training.qat import QatOptions, QatRequest, quantization_aware_training

    write_dataset(folder / "qat-data", SynthConfig(num_images=10, seed=2, min_side=64, max_side=96, max_object=60))
    request = QatRequest(target="tensorrt", calibration=CalibrationOptions(str(folder / "calib"), count=8, min_images=8,
                                                                           cache_dir=folder / "stats"),
                         schedule=QatOptions(data=str(folder / "qat-data"), out_dir=str(folder / "qat-run"),
                                             iterations=1, batch_size=2))
    quantization_aware_training(tiny_model(CLASSES), qat_graph_path(folder), request=request,
                                export=ExportOptions(preprocess=PreprocessConfig(*INPUT), tail="decode", batch=BATCH))


def graphs_folder(default: Path) -> Path:
    return make_graphs(Path(os.environ.get(ENV_GRAPHS) or default))
