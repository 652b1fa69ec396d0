"""``config.pbtxt`` texts (Triton's ``model_config.proto`` in text format) for retina-edge models.

Tensors are (name, Triton data type, dims without the batch dimension); every model batches
(``max_batch_size`` > 0). The deployment contract travels in each model's ``deployment``
parameter, the class names in ``class_names`` (both JSON).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from retina_edge.anchors import feature_shapes_for, grid_anchors
from retina_edge.contract import INPUT_NAME, DeploymentMetadata
from retina_edge.errors import RetinaEdgeError

Tensor = tuple[str, str, tuple[int, ...]]
IMAGE_BYTES: Tensor = ("image", "TYPE_UINT8", (-1,))
DETECTIONS: tuple[Tensor, ...] = (("boxes", "TYPE_FP32", (-1, 4)), ("scores", "TYPE_FP32", (-1,)), ("labels", "TYPE_INT32", (-1,)))


@dataclass(frozen=True)
class Scheduling:
    """``max_batch``: requests per execution; ``instances``: model copies; ``kind``: KIND_AUTO,
    KIND_CPU or KIND_GPU; ``max_queue_delay_us``: how long the batcher may wait to fill a batch."""

    max_batch: int
    instances: int
    kind: str
    max_queue_delay_us: int


#: NumPy type name -> Triton's data type.
TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "int32": "TYPE_INT32",
                "uint8": "TYPE_UINT8"}


def network_tensors(metadata: DeploymentMetadata) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """(inputs, outputs) of the exported graph of ``metadata``, per image, as the exporter shapes them:
    the input as the contract says (a frame graph's uint8 frames), output names and types from the
    tail's table entry, sizes from its form."""
    height, width = metadata.input_size
    model, tail = metadata.model, metadata.tail
    levels = [len(level) for level in grid_anchors(feature_shapes_for((height, width)), (height, width), model.anchors)]
    classes, form = model.num_classes, tail.spec.form
    if form == "raw":
        dims = ((sum(levels), classes), (sum(levels), 4))
    else:
        count = (sum(min(tail.topk_candidates, n * classes) for n in levels) if form == "candidates"
                 else tail.detections_per_img)
        dims = ((count, 4), (count,), (count,)) if form == "candidates" else ((1,), (count, 4), (count,), (count,))
    outputs = tuple((name, TRITON_TYPES[dtype], shape) for (name, dtype), shape in zip(tail.spec.outputs, dims))
    return ((INPUT_NAME, TRITON_TYPES[metadata.input_dtype], metadata.input_shape),), outputs


def _tensors(kind: str, tensors: tuple[Tensor, ...], *, ragged: bool = False) -> str:
    extra = " allow_ragged_batch: true" if ragged else ""
    rows = ",\n".join(f'  {{ name: "{name}" data_type: {dtype} dims: [ {", ".join(map(str, dims))} ]'
                      f'{extra if kind == "input" else ""} }}' for name, dtype, dims in tensors)
    return f"{kind} [\n{rows}\n]"


def _parameters(values: dict[str, str]) -> str:
    return "\n".join(f"parameters {{ key: {json.dumps(k)} value: {{ string_value: {json.dumps(v)} }} }}"
                     for k, v in values.items())


def _header(name: str, backend_line: str, scheduling: Scheduling, *, batcher: bool = True) -> str:
    lines = [f'name: "{name}"', backend_line, f"max_batch_size: {scheduling.max_batch}"]
    if batcher:
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {scheduling.max_queue_delay_us} }}")
        lines.append(f"instance_group [ {{ count: {scheduling.instances} kind: {scheduling.kind} }} ]")
    return "\n".join(lines)


def contract_parameters(metadata: DeploymentMetadata, **extra: str) -> dict[str, str]:
    return {"deployment": json.dumps(metadata.to_props()), "class_names": json.dumps(list(metadata.model.class_names)),
            **extra}


def python_model(name: str, role: str, metadata: DeploymentMetadata, scheduling: Scheduling, *,
                 inputs: tuple[Tensor, ...], outputs: tuple[Tensor, ...], model_file: str | None = None) -> str:
    """A Python-backend model of ``role`` (see :mod:`.backend_model`)."""
    extra = {"role": role, **({"model_file": model_file} if model_file else {})}
    return "\n".join([_header(name, 'backend: "python"', scheduling),
                      _tensors("input", inputs, ragged=inputs == (IMAGE_BYTES,)), _tensors("output", outputs),
                      _parameters(contract_parameters(metadata, **extra))]) + "\n"


def network_model(name: str, platform: str, metadata: DeploymentMetadata, scheduling: Scheduling, *,
                  contract: bool = False) -> str:
    """The graph itself for Triton's ``tensorrt_plan`` or ``onnxruntime_onnx`` backend; ``contract``:
    with the deployment contract in its parameters (a model clients call directly)."""
    inputs, outputs = network_tensors(metadata)
    parameters = [_parameters(contract_parameters(metadata))] if contract else []
    return "\n".join([_header(name, f'platform: "{platform}"', scheduling), _tensors("input", inputs),
                      _tensors("output", outputs), *parameters]) + "\n"


def ensemble_model(name: str, metadata: DeploymentMetadata, scheduling: Scheduling, steps: list[tuple[str, dict, dict]]) -> str:
    """``steps``: (model name, input_map, output_map) in order; the ensemble takes image bytes and
    gives the detections."""
    check_wiring(steps)
    rendered = []
    for model, input_map, output_map in steps:
        maps = [f'input_map {{ key: "{k}" value: "{v}" }}' for k, v in input_map.items()]
        maps += [f'output_map {{ key: "{k}" value: "{v}" }}' for k, v in output_map.items()]
        rendered.append(f'  {{ model_name: "{model}" model_version: -1\n    ' + "\n    ".join(maps) + " }")
    return "\n".join([_header(name, 'platform: "ensemble"', scheduling, batcher=False),
                      _tensors("input", (IMAGE_BYTES,), ragged=True), _tensors("output", DETECTIONS),
                      "ensemble_scheduling { step [\n" + ",\n".join(rendered) + "\n] }",
                      _parameters(contract_parameters(metadata))]) + "\n"


def check_wiring(steps: list[tuple[str, dict, dict]]) -> None:
    """Triton's rules for an ensemble of ``steps`` (image bytes in, detections out), checked before
    anything is written: each step reads tensors already made, each tensor is made by one step only."""
    made = {IMAGE_BYTES[0]}
    for model, input_map, output_map in steps:
        missing = sorted(set(input_map.values()) - made)
        twice = sorted(made & set(output_map.values()))
        if missing or twice:
            problem = f"reads {missing}, which no earlier step makes" if missing else f"makes {twice} a second time"
            raise RetinaEdgeError(f"the ensemble step {model} {problem}")
        made |= set(output_map.values())
    if not {name for name, _, _ in DETECTIONS} <= made:
        raise RetinaEdgeError("the ensemble's steps do not make its outputs (boxes, scores, labels)")
