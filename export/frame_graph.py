"""A frame graph: the deployed graph with the host's steps inside, camera frame in, final detections
in the frame's pixels out.

:func:`wrap_frame` puts nodes around a finished graph of the ``detections`` form, whatever its
precision. It runs after the precision recipes (``build`` wraps the graph its recipe made), so no
recipe ever sees these nodes: no Q/DQ pair and no FP16 cast lands on them, by construction rather
than by exclusion lists, and calibration and the accuracy search run the plain graph on the host's
preprocessing, which these nodes reproduce. Before the network, what
:func:`retina_edge.preprocess.preprocess_image` does on the host:

- ``images`` uint8 ``(B, H_f, W_f, 3)`` -> Cast to float32;
- Resize (``linear``, ``half_pixel``, no antialiasing: OpenCV's ``INTER_LINEAR`` on float32) to the
  letterboxed size, still NHWC: ONNX Runtime has a fast path for it (1.6 ms against 10 ms in NCHW
  for a 1920x1080 frame, one core), and TensorRT resizes the innermost three dimensions in linear
  mode; skipped when the frame already has that size;
- Transpose to NCHW, Gather the channels BGR -> RGB (``bgr`` frames), ``x / 255``, ``(x - mean) / std``,
  on the resized image only; the host divides by 255 before resizing, which differs by float
  rounding alone (resizing is linear);
- Pad with zeros (the mean colour after normalising) to the network input, where the letterbox
  places the image.

After the network, what :func:`retina_edge.preprocess.boxes_to_source` does: ``det_boxes`` minus
the letterbox offset, divided by its scale, clipped to the frame (padding rows stay zero). The
frame size is fixed, so the placement and scale are constants.

:class:`FrameTail` is the PyTorch twin of the box steps, around a tail module, for ``verify``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from retina_edge.contract import INPUT_NAME, DeploymentMetadata
from retina_edge.errors import RetinaEdgeError
from retina_edge.preprocess import letterbox_geometry

#: Names of the nodes and tensors added here: outside ``contract.NETWORK_SCOPES``, like the tail's.
PREFIX = "/frame/"
NETWORK_INPUT = PREFIX + "network_input"
BOXES = "det_boxes"


def box_mapping(metadata: DeploymentMetadata) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offset, scale, limit) as float32 ``[x1, y1, x2, y2]`` constants: frame boxes are
    ``clip((input_boxes - offset) / scale, 0, limit)``, as :func:`~retina_edge.preprocess.boxes_to_source`
    computes them."""
    info = letterbox_geometry(metadata.frame.size, metadata.preprocess)
    offset = np.array([info.pad_x, info.pad_y] * 2, dtype=np.float32)
    scale = np.array([info.scale_x, info.scale_y] * 2, dtype=np.float32)
    limit = np.array([metadata.frame.width, metadata.frame.height] * 2, dtype=np.float32)
    return offset, scale, limit


def wrap_frame(model, metadata: DeploymentMetadata) -> None:  # noqa: ANN001 (onnx.ModelProto)
    """Turn ``model``, a graph of ``metadata.without_frame()``, into the frame graph of ``metadata``, in place."""
    from onnx import TensorProto

    graph = model.graph
    inputs = {value.name: value for value in graph.input}
    outputs = {value.name: value for value in graph.output}
    if INPUT_NAME not in inputs or BOXES not in outputs:
        raise RetinaEdgeError(f"a frame graph wraps a graph with an '{INPUT_NAME}' input and a '{BOXES}' output "
                              f"(the detections form); this one has {sorted(inputs)} and {sorted(outputs)}")
    for value in (inputs[INPUT_NAME], outputs[BOXES]):
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            raise RetinaEdgeError(f"the frame steps exchange float32 with the network, but its '{value.name}' is "
                                  f"{TensorProto.DataType.Name(value.type.tensor_type.elem_type)}")
    boxes_in_input = PREFIX + "det_boxes_in_input"
    _rename(graph, INPUT_NAME, NETWORK_INPUT)
    _rename(graph, BOXES, boxes_in_input)
    frame_input = inputs[INPUT_NAME].type.tensor_type
    frame_input.elem_type = TensorProto.UINT8
    for dim, size in zip(frame_input.shape.dim[1:], (*metadata.frame.size, 3)):
        dim.dim_value = size
    before, before_constants = _preprocess_nodes(metadata)
    after, after_constants = _box_nodes(metadata, boxes_in_input)
    nodes = [*before, *graph.node, *after]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend([*before_constants, *after_constants])


def _rename(graph, old: str, new: str) -> None:  # noqa: ANN001
    """Every node's reference to tensor ``old`` (read or written) and its value info now name ``new``."""
    for node in graph.node:
        for names in (node.input, node.output):
            for index, name in enumerate(names):
                if name == old:
                    names[index] = new
    for value in graph.value_info:
        if value.name == old:
            value.name = new


class _Nodes:
    """Nodes and their constants in order; :meth:`then` chains a step onto the previous one's output."""

    def __init__(self, first: str) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.constants, self.last = [], [], first

    def constant(self, name: str, value: np.ndarray) -> str:
        self.constants.append(self.numpy_helper.from_array(np.asarray(value), PREFIX + name))
        return PREFIX + name

    def node(self, op: str, name: str, inputs: list[str], **attributes: object) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [PREFIX + name], name=PREFIX + name, **attributes))
        return PREFIX + name

    def then(self, op: str, name: str, *extra: str, **attributes: object) -> None:
        self.last = self.node(op, name, [self.last, *extra], **attributes)

    def ending_in(self, output: str) -> tuple[list, list]:
        """The nodes, the last one writing ``output``, and the constants."""
        self.nodes[-1].output[0] = output
        return self.nodes, self.constants


def _preprocess_nodes(metadata: DeploymentMetadata) -> tuple[list, list]:
    """uint8 NHWC frames -> the normalised, letterboxed float32 NCHW batch the network reads."""
    from onnx import TensorProto

    preprocess = metadata.preprocess
    info = letterbox_geometry(metadata.frame.size, preprocess)
    height, width = info.resized_size
    chain = _Nodes(INPUT_NAME)
    chain.then("Cast", "to_float", to=TensorProto.FLOAT)
    if (height, width) != metadata.frame.size:
        batch = chain.node("Shape", "batch_size", [INPUT_NAME], start=0, end=1)
        resized = chain.constant("resized_hwc", np.array([height, width, 3], np.int64))
        sizes = chain.node("Concat", "resize_sizes", [batch, resized], axis=0)
        chain.then("Resize", "resize", "", "", sizes, mode="linear", coordinate_transformation_mode="half_pixel")
    chain.then("Transpose", "to_nchw", perm=[0, 3, 1, 2])
    if metadata.frame.channels == "bgr":
        chain.then("Gather", "bgr_to_rgb", chain.constant("rgb_order", np.array([2, 1, 0], np.int64)), axis=1)
    chain.then("Mul", "to_unit", chain.constant("unit", np.array(1.0 / 255.0, np.float32)))
    chain.then("Sub", "minus_mean", chain.constant("mean", np.float32(preprocess.mean).reshape(1, 3, 1, 1)))
    chain.then("Div", "by_std", chain.constant("std", np.float32(preprocess.std).reshape(1, 3, 1, 1)))
    pads = [0, 0, info.pad_y, info.pad_x,
            0, 0, preprocess.height - height - info.pad_y, preprocess.width - width - info.pad_x]
    if any(pads):
        chain.then("Pad", "letterbox", chain.constant("pads", np.array(pads, np.int64)), mode="constant")
    return chain.ending_in(NETWORK_INPUT)


def _box_nodes(metadata: DeploymentMetadata, boxes_in_input: str) -> tuple[list, list]:
    """``det_boxes`` in network-input pixels -> in frame pixels, clipped to the frame."""
    offset, scale, limit = box_mapping(metadata)
    chain = _Nodes(boxes_in_input)
    chain.then("Sub", "minus_offset", chain.constant("box_offset", offset))
    chain.then("Div", "by_scale", chain.constant("box_scale", scale))
    chain.then("Max", "clip_low", chain.constant("zero", np.zeros(4, np.float32)))
    chain.then("Min", "clip_high", chain.constant("frame_limit", limit))
    return chain.ending_in(BOXES)


class FrameTail(nn.Module):
    """PyTorch twin of the frame graph's box steps around a tail module (``inner``, a
    :class:`~retina_edge.export.graph_heads.TailModule`): the same ``network_input`` (it takes the
    host's normalised batch: ``verify`` runs the reference on the host's preprocessing) and
    ``tail``, whose ``det_boxes`` are mapped to frame pixels and clipped as :func:`wrap_frame`'s
    nodes map them."""

    def __init__(self, inner: nn.Module, metadata: DeploymentMetadata) -> None:
        super().__init__()
        self.inner = inner
        for name, value in zip(("box_offset", "box_scale", "frame_limit"), box_mapping(metadata)):
            self.register_buffer(name, torch.from_numpy(value), persistent=False)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        outputs, _ = self.inner.model.head_outputs(self.network_input(images))
        return self.tail(outputs)

    def network_input(self, images: Tensor) -> Tensor:
        return self.inner.network_input(images)

    def tail(self, outputs: dict[str, Tensor]) -> tuple[Tensor, ...]:
        num_detections, boxes, scores, labels = self.inner.tail(outputs)
        mapped = ((boxes - self.box_offset) / self.box_scale).clamp(min=0)
        return num_detections, torch.minimum(mapped, self.frame_limit), scores, labels
