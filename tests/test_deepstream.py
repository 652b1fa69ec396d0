"""The DeepStream folder: the ``deepstream`` graph read as DeepStream's stock parser reads it, after
nvinfer's preprocessing computed from the written config, against ``Detector`` on the same frames;
every written config key against NVIDIA's key lists; FP16/INT8 variants; engines; the release guard."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from nvinfer_emulation import nvinfer_input, read_config, stock_parser, to_frame  # noqa: E402
from tiny import tiny_model  # noqa: E402

from retina_edge.cli.main import main
from retina_edge.contract import DeploymentMetadata, GraphTail
from retina_edge.data.synth import SynthConfig, render_image
from retina_edge.errors import RetinaEdgeError
from retina_edge.metrics.matching import match_detections
from retina_edge.runtime import Detector
from retina_edge.runtime.engine_file import write_engine_file
from retina_edge.runtime.model_file import read_deployment

#: Keys Gst-nvinfer reads: ``sources/gst-plugins/gst-nvinfer/gstnvinfer_property_parser.h`` of the DeepStream
#: SDK sources (github.com/hiennguyen9874/deepstream-sources @ f9948312, DeepStream 6.2; the same list is
#: https://docs.nvidia.com/metropolis/deepstream/dev-guide/sdk-api/gstnvinfer__property__parser_8h.html, 8.0).
NVINFER_PROPERTY_KEYS = frozenset("""
    parse-func gie-unique-id process-mode interval labelfile-path gpu-id secondary-reinfer-interval output-tensor-meta
    disable-output-host-copy enable-dla use-dla-core batch-size tensor-meta-pool-size network-mode model-engine-file
    int8-calib-file workspace-size output-blob-names is-classifier network-type force-implicit-batch-dim infer-dims
    output-io-formats layer-device-precision model-color-format net-scale-factor offsets mean-file maintain-aspect-ratio
    symmetric-padding scaling-filter scaling-compute-hw network-input-order input-tensor-from-meta custom-lib-path
    parse-bbox-func-name parse-bbox-instance-mask-func-name engine-create-func-name parse-classifier-func-name
    custom-network-config model-file proto-file uff-file uff-input-order input-dims uff-input-dims uff-input-blob-name
    tlt-encoded-model tlt-model-key onnx-file num-detected-classes enable-dbscan cluster-mode crop-objects-to-roi-boundary
    classifier-type classifier-threshold classifier-async-mode segmentation-threshold segmentation-output-order
    output-instance-mask input-object-min-width input-object-min-height input-object-max-width input-object-max-height
    operate-on-gie-id operate-on-class-ids filter-out-class-ids""".split())
#: Keys of ``[class-attrs-all]`` / ``[class-attrs-<id>]`` (same header).
NVINFER_CLASS_ATTR_KEYS = frozenset("""threshold pre-cluster-threshold post-cluster-threshold eps group-threshold minBoxes
    dbscan-min-score roi-top-offset roi-bottom-offset detected-min-w detected-min-h detected-max-w detected-max-h
    border-color bg-color nms-iou-threshold topk""".split())
#: deepstream-app groups and keys: ``sources/apps/apps-common/includes/deepstream_config_file_parser.h``,
#: ``sources/apps/apps-common/src/deepstream_config_file_parser.c`` and
#: ``sources/apps/sample_apps/deepstream-app/deepstream_app_config_parser.c`` (same repository and commit).
DEEPSTREAM_APP_KEYS = {
    "application": {"enable-perf-measurement", "perf-measurement-interval-sec", "gie-kitti-output-dir",
                    "kitti-track-output-dir"},
    "tiled-display": {"enable", "rows", "columns", "width", "height", "gpu-id", "nvbuf-memory-type", "compute-hw",
                      "buffer-pool-size"},
    "source": {"enable", "type", "uri", "num-sources", "gpu-id", "camera-width", "camera-height", "camera-fps-n",
               "camera-fps-d", "camera-csi-sensor-id", "camera-v4l2-dev-node", "latency", "intra-decode-enable",
               "drop-frame-interval", "camera-id", "select-rtp-protocol", "rtsp-reconnect-interval-sec",
               "nvbuf-memory-type", "live-source", "file-loop"},
    "streammux": {"gpu-id", "live-source", "batch-size", "batched-push-timeout", "width", "height", "enable-padding",
                  "nvbuf-memory-type", "buffer-pool-size", "attach-sys-ts-as-ntp", "config-file", "sync-inputs",
                  "max-latency", "frame-duration"},
    "primary-gie": {"enable", "gpu-id", "batch-size", "gie-unique-id", "interval", "config-file", "model-engine-file",
                    "labelfile-path", "plugin-type", "bbox-border-color", "bbox-bg-color", "nvbuf-memory-type",
                    "operate-on-gie-id", "operate-on-class-ids", "infer-raw-output-dir"},
    "tracker": {"enable", "tracker-width", "tracker-height", "ll-lib-file", "ll-config-file", "gpu-id",
                "enable-batch-process", "enable-past-frame", "display-tracking-id", "tracking-id-reset-mode",
                "tracking-surface-type", "compute-hw"},
    "osd": {"enable", "gpu-id", "border-width", "border-color", "text-size", "text-color", "text-bg-color", "font",
            "show-clock", "clock-x-offset", "clock-y-offset", "clock-text-size", "clock-color", "nvbuf-memory-type",
            "display-text", "display-bbox", "display-mask", "process-mode"},
    "sink": {"enable", "type", "sync", "gpu-id", "qos", "container", "codec", "enc-type", "bitrate", "profile",
             "iframeinterval", "output-file", "source-id", "rtsp-port", "udp-port", "nvbuf-memory-type", "link-to-demux"},
}
#: nvinferserver fields: every field name of ``sources/gst-plugins/gst-nvinferserver/nvdsinferserver_{plugin,config,
#: common}.proto`` (same repository and commit), plus protobuf's ``key``/``value`` of map entries.
INFERSERVER_FIELDS = frozenset("""
    a async_mode b backend backend_configs backend_dir bbox_filter bg_color border_color channel_offsets class_params
    classification classifier_type confidence_threshold copy_input_to_host_buffers cuda_device_memory custom_lib
    custom_parse_bbox_func custom_parse_classifier_func custom_process_funcion data_type dbscan default_filter
    detect_control detection device dims enable_cuda_buffer_sharing eps extra frame_scaling_filter frame_scaling_hw g
    gpu_ids group_rectangle group_threshold grpc infer_config init_const input input_control input_tensor_from_meta
    inputs interval iou_threshold is_first_dim_batch keep_output labelfile_path log_level loops lstm
    maintain_aspect_ratio max_batch_size max_buffer_bytes max_height max_width mean_file memory_pool_byte_size min_boxes
    min_compute_capacity min_height min_score min_width model_control_mode model_name model_repo name network_format
    nms normalize num_detected_classes object_control operate_on_class_ids operate_on_gie_id other output
    output_buffer_pool_size output_control output_mem_type output_tensor_meta outputs path pinned_memory_pool_byte_size
    postprocess pre_threshold preprocess process_mode r roi_bottom_offset roi_top_offset root scale_factor segmentation
    setting simple_cluster strict_model_config symmetric_padding tensor_name tensor_order tf_disable_soft_placement
    tf_gpu_memory_fraction threshold topk triton triton_classification trt_is trtis_classification type_name unique_id
    url value version key per_class_params""".split())


def frames() -> list[np.ndarray]:
    """Synthetic frames in the preset's domain, of many aspect ratios (4:3 to 16:9 and portrait)."""
    import cv2

    images = []
    for index, (width, height) in enumerate([(320, 180), (256, 192), (180, 320), (300, 200), (224, 224), (400, 225)] * 4):
        image = render_image(SynthConfig(seed=21, min_side=176, max_side=224, max_object=200), index)[0]
        images.append(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))
    return images


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("deepstream")
    assert main(["deepstream", "--model", "preset:synth", "-o", str(root / "ds"), "--sources", "3",
                 "--deepstream", "7.1", "--module", "agx-orin"]) == 0
    assert main(["export", "--weights", "preset:synth", "-o", str(root / "reference.onnx")]) == 0
    return root


def deepstream_detections(folder: Path, images: list[np.ndarray], *, fill: np.ndarray | None = None):
    """What DeepStream attaches to each frame: nvinfer preprocessing from the written config, the
    graph, the stock parser on its raw output buffers, the mapping back to the frame."""
    config = read_config(folder / "config_infer_primary.txt")
    prop = config["property"]
    session = ort.InferenceSession(str(folder / prop["onnx-file"]), providers=["CPUExecutionProvider"])
    size = tuple(session.get_inputs()[0].shape[2:])
    threshold = float(config["class-attrs-all"]["pre-cluster-threshold"])
    results = []
    for image in images:
        network_input, placement = nvinfer_input(image, prop, size)
        if fill is not None:  # the measurement below: padding in another colour than nvinfer's black
            mask = np.ones(size, dtype=bool)
            h, w = round(placement.ratio_y * (image.shape[0] & ~1)), round(placement.ratio_x * (image.shape[1] & ~1))
            mask[placement.offset_top : placement.offset_top + h, placement.offset_left : placement.offset_left + w] = False
            network_input[:, mask] = fill[:, None]
        outputs = session.run(None, {"images": network_input[None]})
        buffers = [np.ascontiguousarray(output[0]).tobytes() for output in outputs]  # one frame's slice of each binding
        objects = stock_parser(buffers, size, prop.getint("num-detected-classes"), threshold)
        results.append(to_frame(objects, placement, threshold))
    return results


def agreement(reference, candidates, *, min_score: float) -> dict:
    """Detector's detections scoring >= min_score matched one-to-one (same class, IoU > 0.9) to DeepStream's."""
    matched = total = found = 0
    score_errors = []
    for ref, (boxes, scores, labels) in zip(reference, candidates):
        keep, keep_c = ref.scores >= min_score, scores >= min_score
        result = match_detections(ref.boxes[keep], ref.scores[keep], ref.labels[keep], boxes[keep_c], scores[keep_c],
                                  labels[keep_c], iou_thresh=0.9, score_tol=1.0, coord_tol=0.0)
        matched, total, found = matched + result.matched, total + result.num_reference, found + result.num_candidate
        score_errors += [abs(float(ref.scores[keep][i]) - float(scores[keep_c][j])) for i, j in result.pairs]
    return {"recall": matched / max(total, 1), "precision": matched / max(found, 1), "reference": total,
            "deepstream": found, "max_score_diff": max(score_errors, default=0.0)}


def test_stock_parser_on_our_graph_gives_detectors_objects(folder, capsys):
    """Measured on the synth preset, 24 frames of 6 aspect ratios (top-left letterbox, the default):
    DeepStream's path finds Detector's confident objects (score >= 0.5) at IoU > 0.9 with the same
    class; against Detector on the same deepstream graph (our preprocessing) nearly all of them."""
    images = frames()
    with Detector(folder / "reference.onnx", backend="onnxruntime") as detector:
        reference = detector.detect(images)
    with Detector(folder / "ds" / "model.onnx", backend="onnxruntime") as detector:
        same_graph = detector.detect(images)
    black = deepstream_detections(folder / "ds", images)
    confident = agreement(reference, black, min_score=0.5)
    preprocessing = agreement(same_graph, black, min_score=0.5)
    mean = deepstream_detections(folder / "ds", images, fill=np.array([0.485, 0.456, 0.406], dtype=np.float32))
    with capsys.disabled():
        print(f"\nDeepStream path (nvinfer preprocessing from the config, black padding, stock parser) on {len(images)} "
              f"frames vs Detector: score>=0.5 {confident}; score>=0.05 {agreement(reference, black, min_score=0.05)}; "
              f"vs Detector on the deepstream graph {preprocessing}; padding in the mean colour instead: "
              f"{agreement(reference, mean, min_score=0.5)}")
    assert confident["reference"] >= 40
    assert confident["recall"] >= 0.9 and confident["precision"] >= 0.9 and confident["max_score_diff"] < 0.2
    assert preprocessing["recall"] >= 0.95 and preprocessing["precision"] >= 0.95 and preprocessing["max_score_diff"] < 0.06
