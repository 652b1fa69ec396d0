"""The graphs the TensorRT API tier builds engines from: FP32, FP16 and INT8 (TensorRT placement)
graphs of a tiny RetinaNet with none/decode/nms tails, made once per test session (they do not
depend on the TensorRT version), with the INT8 build's legacy calibration cache; one INT8 graph
made by quantization-aware training (``retina-edge qat``, one iteration); and each precision's nms
graph as a frame graph (uint8 90x70 BGR frames in), wrapped as ``build`` wraps it."""

from __future__ import annotations

import os
from pathlib import Path

PRECISIONS = ("fp32", "fp16", "int8")
TAILS = ("none", "decode", "nms")
ENV_GRAPHS = "RETINA_EDGE_TRT_GRAPHS"  # set by the outer test: the folder already made
INPUT = (64, 96)
BATCH = (1, 2, 4)


#: (H, W) of the frame graphs' frames.
FRAME = (70, 90)


def graph_path(folder: Path, precision: str, tail: str) -> Path:
    return folder / f"{precision}-{tail}.onnx"


def frame_graph_path(folder: Path, precision: str) -> Path:
    return folder / f"{precision}-frame.onnx"


def wrap_in_frame_steps(plain: Path, output: Path) -> None:
    """What ``build --frame`` writes: the recipe's graph in the frame steps, the contract with the frame."""
    import dataclasses

    import onnx

    from retina_edge.export.frame_graph import wrap_frame
    from retina_edge.preprocess import FrameInput
    from retina_edge.runtime.core.model_file import embed_deployment, read_deployment

    graph, metadata = onnx.load(str(plain)), dataclasses.replace(read_deployment(plain), frame=FrameInput(*FRAME))
    wrap_frame(graph, metadata)
    embed_deployment(graph, metadata)
    onnx.save(graph, str(output))


def qat_graph_path(folder: Path) -> Path:
    return folder / "int8-qat-decode.onnx"


def make_graphs(folder: Path) -> Path:
    """Write the nine graphs (and ``int8-*.calib.cache``), the QAT graph and the three frame graphs into
    ``folder``; reused when complete."""
    wanted = [*(graph_path(folder, p, t) for p in PRECISIONS for t in TAILS), qat_graph_path(folder),
              *(frame_graph_path(folder, p) for p in PRECISIONS)]
    if all(path.is_file() for path in wanted):
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
        wrap_in_frame_steps(graph_path(folder, precision, "nms"), frame_graph_path(folder, precision))
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
