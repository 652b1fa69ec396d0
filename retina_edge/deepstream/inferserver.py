"""The Gst-nvinferserver config (protobuf text of ``nvdsinferserver_plugin.proto``) for the network
model of the Triton repository ``retina-edge triton --ensemble`` writes (``<name>_network``: the
graph alone, ``images`` in, the four ``deepstream`` outputs out).

Preprocessing and parsing are nvinfer's (:mod:`.nvinfer`): ``normalize`` scale 1/255 and zero
offsets, letterbox as exported, the stock parser; no clustering policy is set (the graph ran NMS).
Field names: ``nvdsinferserver_config.proto`` / ``nvdsinferserver_common.proto`` of the DeepStream
sources; layout after NVIDIA's ``deepstream-app-triton/config_infer_plan_engine_primary.txt``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from retina_edge.contract import INPUT_NAME, DeploymentMetadata
from retina_edge.deepstream.nvinfer import CUSTOM_LIB, NET_SCALE_FACTOR, PARSE_BBOX_FUNC, SCALING_FILTER_BILINEAR


@dataclass(frozen=True)
class InferServerSettings:
    """``repository``: the Triton model repository folder (relative to this config or absolute);
    ``model_name``: the Triton model serving the graph; ``max_batch``: at most its ``max_batch_size``."""

    repository: str
    model_name: str
    max_batch: int
    score_thresh: float
    gie_unique_id: int = 1
    gpu_id: int = 0
    labels_file: str = "labels.txt"


def inferserver_config(metadata: DeploymentMetadata, settings: InferServerSettings) -> str:
    """The config text; every class gets ``pre_threshold`` (the parser reads class 0's for all)."""
    letterbox = int(metadata.preprocess.mode == "letterbox")
    centred = int(metadata.preprocess.align == "center")
    thresholds = "\n".join(f"      per_class_params {{ key: {index} value {{ pre_threshold: {settings.score_thresh:g} }} }}"
                           for index in range(metadata.model.num_classes))
    return f"""# Gst-nvinferserver config written by retina-edge: the graph served by Triton ({settings.model_name}),
# nvinfer's preprocessing (RGB 0..1; the graph applies the model's mean/std), the stock parser.
infer_config {{
  unique_id: {settings.gie_unique_id}
  gpu_ids: [{settings.gpu_id}]
  max_batch_size: {settings.max_batch}
  backend {{
    triton {{
      model_name: {json.dumps(settings.model_name)}
      version: -1
      model_repo {{
        root: {json.dumps(settings.repository)}
        strict_model_config: true
      }}
    }}
  }}
  preprocess {{
    network_format: IMAGE_FORMAT_RGB
    tensor_order: TENSOR_ORDER_LINEAR
    tensor_name: {json.dumps(INPUT_NAME)}
    maintain_aspect_ratio: {letterbox}
    symmetric_padding: {centred}
    frame_scaling_hw: FRAME_SCALING_HW_DEFAULT
    frame_scaling_filter: {SCALING_FILTER_BILINEAR}
    normalize {{
      scale_factor: {NET_SCALE_FACTOR}
      channel_offsets: [0, 0, 0]
    }}
  }}
  postprocess {{
    labelfile_path: {json.dumps(settings.labels_file)}
    detection {{
      num_detected_classes: {metadata.model.num_classes}
      custom_parse_bbox_func: {json.dumps(PARSE_BBOX_FUNC)}
{thresholds}
    }}
  }}
  custom_lib {{
    path: {json.dumps(CUSTOM_LIB)}
  }}
}}
input_control {{
  process_mode: PROCESS_MODE_FULL_FRAME
  interval: 0
}}
"""
