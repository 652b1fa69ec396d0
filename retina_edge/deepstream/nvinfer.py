"""The Gst-nvinfer config (``[property]`` + ``[class-attrs-all]``) and labels file for a ``deepstream`` graph.

nvinfer scales each frame to the network size (``maintain-aspect-ratio=1``: aspect kept, padded
black; ``symmetric-padding=1``: centred), then computes ``y = net-scale-factor * (x - offsets[c])``
on 0..255 RGB. With 1/255 and zero offsets that is the graph's input (RGB in [0, 1]); the graph
applies the model's mean/std itself. ``NvDsInferParseYoloV5CustomBatchedNMSTLT`` in the stock
``libnvds_infercustomparser.so`` reads its four outputs by index; ``cluster-mode=4`` adds no
clustering (the graph ran NMS). Keys: ``gstnvinfer_property_parser.h`` of the DeepStream sources.
"""

from __future__ import annotations

from dataclasses import dataclass

from retina_edge.contract import DeploymentMetadata
from retina_edge.errors import RetinaEdgeError

#: float32 nearest above 1/255, as NVIDIA's sample configs write it.
NET_SCALE_FACTOR = "0.0039215697906911373"
PARSE_BBOX_FUNC = "NvDsInferParseYoloV5CustomBatchedNMSTLT"
CUSTOM_LIB = "/opt/nvidia/deepstream/deepstream/lib/libnvds_infercustomparser.so"
#: nvinfer ``scaling-filter`` 1 = NvBufSurfTransformInter_Bilinear (the default, 6, is nearest on the
#: GPU); bilinear is what our preprocessing does.
SCALING_FILTER_BILINEAR = 1
#: ``cluster-mode`` 4: no clustering.
CLUSTER_NONE = 4

Section = list[tuple[str, str | int | float, str]]  # (key, value, comment above it or "")


@dataclass(frozen=True)
class NvinferSettings:
    """``model_file``: the ONNX graph or bare TensorRT plan, relative to the config (nvinfer resolves
    relative paths from the config's folder); ``batch_size``: frames per inference call;
    ``score_thresh``: ``pre-cluster-threshold``; ``dla_core``: run on this DLA core (Jetson);
    ``calibration_cache``: a legacy INT8 cache for an FP32 graph (implicit INT8, TensorRT <= 10)."""

    model_file: str
    batch_size: int
    score_thresh: float
    gie_unique_id: int = 1
    gpu_id: int = 0
    labels_file: str = "labels.txt"
    dla_core: int | None = None
    calibration_cache: str | None = None


def network_mode(metadata: DeploymentMetadata, *, legacy_int8: bool = False) -> int:
    """nvinfer's ``network-mode`` (0 FP32, 1 INT8, 2 FP16) for the graph, from the recipe that made
    it (``Recipe.nvinfer_mode``); ``legacy_int8``: an FP32 graph run in implicit INT8 from a
    calibration cache (TensorRT <= 10), as the ``int8`` TensorRT recipe runs."""
    from retina_edge.calib.recipes import recipe_for_graph

    recipe = recipe_for_graph("int8", "tensorrt") if legacy_int8 else recipe_for_graph(metadata.precision, metadata.target)
    if recipe.nvinfer_mode is None:
        raise RetinaEdgeError(f"nvinfer cannot run {metadata.label} graphs ({recipe.description}); build the graph "
                              "for TensorRT", option="target")
    return recipe.nvinfer_mode


def nvinfer_sections(metadata: DeploymentMetadata, settings: NvinferSettings) -> dict[str, Section]:
    """The config as (section -> rows); :func:`render_ini` writes it."""
    engine = not settings.model_file.endswith(".onnx")
    model: Section = [("model-engine-file", settings.model_file, "a TensorRT plan built by retina-edge (its header "
                       "removed): nvinfer loads it as it is; it must come from this device's TensorRT")] if engine else [
        ("onnx-file", settings.model_file, "nvinfer builds the engine at first start and saves it beside the ONNX as "
         f"<onnx>_b{settings.batch_size}_gpu{settings.gpu_id}_<mode>.engine; set model-engine-file to it to skip rebuilds")]
    mode_note = ("INT8 from the graph's Q/DQ nodes: no int8-calib-file is needed (the scales are in the graph); "
                 "nvinfer may log 'INT8 calibration file not specified. Trying FP16 mode.', and TensorRT still "
                 "quantizes where the Q/DQ nodes say") if metadata.precision == "int8" else "0 FP32, 1 INT8, 2 FP16"
    rows: Section = [
        ("gpu-id", settings.gpu_id, ""),
        ("net-scale-factor", NET_SCALE_FACTOR, "y = net-scale-factor * (x - offsets): RGB 0..1; the graph applies the "
                                               f"model's mean {list(metadata.model.transform.image_mean)} and std "
                                               f"{list(metadata.model.transform.image_std)} itself"),
        ("offsets", "0;0;0", ""),
        ("model-color-format", 0, "0 RGB"),
        *model,
        ("labelfile-path", settings.labels_file, ""),
        ("batch-size", settings.batch_size, ""),
        ("network-mode", network_mode(metadata, legacy_int8=bool(settings.calibration_cache)), mode_note),
        *([("int8-calib-file", settings.calibration_cache, "implicit INT8 of an FP32 graph (TensorRT <= 10)")]
          if settings.calibration_cache else []),
        ("num-detected-classes", metadata.model.num_classes, ""),
        ("gie-unique-id", settings.gie_unique_id, ""),
        ("process-mode", 1, "1 primary (full frame)"),
        ("network-type", 0, "0 detector"),
        ("maintain-aspect-ratio", int(metadata.preprocess.mode == "letterbox"), "letterbox as the graph was exported"),
        ("symmetric-padding", int(metadata.preprocess.align == "center"), "1 centred, 0 top-left"),
        ("scaling-filter", SCALING_FILTER_BILINEAR, "bilinear, as retina-edge's preprocessing"),
        ("cluster-mode", CLUSTER_NONE, "no clustering: the graph ran NMS"),
        ("parse-bbox-func-name", PARSE_BBOX_FUNC, "reads the graph's 4 outputs by index: int32 count, float32 "
                                                  "x1y1x2y2 boxes (network pixels), float32 scores, float32 classes"),
        ("custom-lib-path", CUSTOM_LIB, "the stock parser library of a standard DeepStream install"),
    ]
    if settings.dla_core is not None:
        rows += [("enable-dla", 1, ""), ("use-dla-core", settings.dla_core, "")]
    return {"property": rows,
            "class-attrs-all": [("pre-cluster-threshold", f"{settings.score_thresh:g}",
                                 "the parser drops scores below this (the graph already dropped those below "
                                 f"{metadata.tail.score_thresh:g})")]}


def render_ini(sections: dict[str, Section], header: str = "") -> str:
    """GLib key-file text (what nvinfer and deepstream-app read): ``[section]`` then ``key=value``."""
    lines = [f"# {line}" for line in header.splitlines()]
    for name, rows in sections.items():
        lines += ["", f"[{name}]"]
        for key, value, comment in rows:
            if comment:
                lines.append(f"# {comment}")
            lines.append(f"{key}={value}")
    return "\n".join(lines).lstrip("\n") + "\n"


def labels_text(metadata: DeploymentMetadata) -> str:
    """One class name per line, in label order (nvinfer's ``labelfile-path`` for detectors)."""
    model = metadata.model
    return "".join(f"{model.class_name(index)}\n" for index in range(model.num_classes))
