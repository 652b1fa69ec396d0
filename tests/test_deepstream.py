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
from retina_edge.contract import GraphTail
from retina_edge.data.synth import SynthConfig, render_image
from retina_edge.errors import RetinaEdgeError
from retina_edge.metrics.matching import MatchTolerance, match_detections
from retina_edge.runtime import Detector
from retina_edge.runtime.tensorrt.engine_file import write_engine_file
from retina_edge.runtime.core.model_file import read_deployment

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
        result = match_detections((ref.boxes[keep], ref.scores[keep], ref.labels[keep]),
                                  (boxes[keep_c], scores[keep_c], labels[keep_c]),
                                  MatchTolerance(iou_thresh=0.9, score_tol=1.0, coord_tol=0.0))
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


def test_graph_outputs_are_in_the_parsers_order_and_types(folder):
    session = ort.InferenceSession(str(folder / "ds" / "model.onnx"), providers=["CPUExecutionProvider"])
    outputs = [(o.name, o.type, o.shape[1:]) for o in session.get_outputs()]
    assert outputs == [("num_detections", "tensor(int32)", [1]), ("det_boxes", "tensor(float)", [200, 4]),
                       ("det_scores", "tensor(float)", [200]), ("det_labels", "tensor(float)", [200])]
    metadata = read_deployment(folder / "ds" / "model.onnx")
    assert metadata.tail.mode == "deepstream" and metadata.tail.detections_per_img == 200
    assert (metadata.preprocess.mean, metadata.preprocess.std, metadata.preprocess.align) == ((0, 0, 0), (1, 1, 1), "top-left")
    first = [node.op_type for node in onnx.load(str(folder / "ds" / "model.onnx"), load_external_data=False).graph.node[:2]]
    assert first == ["Mul", "Add"]  # (x - mean) / std as one multiply-add, kept outside the network's scopes


def test_the_deepstream_tail_keeps_at_most_200_detections():
    from retina_edge.config import PostprocessConfig

    assert GraphTail.bake("deepstream", PostprocessConfig(detections_per_img=300)).detections_per_img == 200
    assert GraphTail.bake("nms", PostprocessConfig(detections_per_img=300)).detections_per_img == 300
    with pytest.raises(RetinaEdgeError, match="at most 200 detections"):
        GraphTail("deepstream", detections_per_img=201)


def ini_keys(path: Path) -> dict[str, list[str]]:
    return {name: list(section) for name, section in read_config(path).items() if name != "DEFAULT"}


def test_every_written_config_key_is_one_nvidia_documents(folder):
    ds = folder / "ds"
    infer = ini_keys(ds / "config_infer_primary.txt")
    assert set(infer) == {"property", "class-attrs-all"}
    assert set(infer["property"]) <= NVINFER_PROPERTY_KEYS and set(infer["class-attrs-all"]) <= NVINFER_CLASS_ATTR_KEYS
    app = ini_keys(ds / "deepstream_app_config.txt")
    assert {"source0", "source1", "source2", "tracker", "primary-gie", "streammux"} <= set(app)
    for section, keys in app.items():
        assert set(keys) <= DEEPSTREAM_APP_KEYS[re.sub(r"\d+$", "", section)], section
    server = (ds / "config_inferserver_primary.txt").read_text()
    fields = set(re.findall(r"^\s*(\w+)\s*[:{]", server, flags=re.MULTILINE))
    assert fields <= INFERSERVER_FIELDS and {"custom_parse_bbox_func", "scale_factor", "model_repo"} <= fields
    assert server.count("{") == server.count("}")


def test_the_configs_say_what_the_graph_needs(folder):
    ds = folder / "ds"
    prop = read_config(ds / "config_infer_primary.txt")["property"]
    metadata = read_deployment(ds / "model.onnx")
    expected = {"parse-bbox-func-name": "NvDsInferParseYoloV5CustomBatchedNMSTLT", "cluster-mode": "4",
                "custom-lib-path": "/opt/nvidia/deepstream/deepstream/lib/libnvds_infercustomparser.so",
                "net-scale-factor": "0.0039215697906911373", "offsets": "0;0;0", "model-color-format": "0",
                "maintain-aspect-ratio": "1", "symmetric-padding": "0", "network-mode": "0", "network-type": "0",
                "num-detected-classes": str(metadata.model.num_classes), "batch-size": "3", "onnx-file": "model.onnx",
                "labelfile-path": "labels.txt", "gie-unique-id": "1", "process-mode": "1"}
    assert {key: prop[key] for key in expected} == expected
    assert (ds / "labels.txt").read_text().splitlines() == list(metadata.model.class_names)
    app = read_config(ds / "deepstream_app_config.txt")
    assert app["tracker"]["enable"] == "1" and app["streammux"]["batch-size"] == "3"
    assert app["primary-gie"]["config-file"] == "config_infer_primary.txt"
    server = (ds / "config_inferserver_primary.txt").read_text()
    assert 'model_name: "retina_edge_network"' in server and "maintain_aspect_ratio: 1" in server


def fake_engine(folder: Path, path: Path, tensorrt: str, **build) -> Path:  # noqa: ANN003
    metadata = read_deployment(folder / "ds" / "model.onnx").override(batch=(1, 2, 2))
    return write_engine_file(path, b"bare TensorRT plan", metadata=metadata, tensorrt_version=tensorrt,
                             device={"name": "Orin", "compute_capability": "8.7"}, build=build)


def test_an_engine_goes_to_nvinfer_as_its_bare_plan(folder, tmp_path, caplog):
    from retina_edge.deepstream.package import DeepStreamOptions, write_deepstream
    from retina_edge.deepstream.target import Target

    engine = fake_engine(folder, tmp_path / "m.engine", "10.3.0.26")
    write_deepstream(engine, tmp_path / "ds", DeepStreamOptions(sources=2, target=Target(deepstream="7.1")))
    assert (tmp_path / "ds" / "m.plan").read_bytes() == b"bare TensorRT plan"
    prop = read_config(tmp_path / "ds" / "config_infer_primary.txt")["property"]
    assert prop["model-engine-file"] == "m.plan" and "onnx-file" not in prop and prop["batch-size"] == "2"
    assert "exact TensorRT release" in caplog.text
    newer = fake_engine(folder, tmp_path / "new.engine", "11.4.1.2")
    with pytest.raises(RetinaEdgeError, match="built with TensorRT 11.4.1.2, but DeepStream runs TensorRT 10"):
        write_deepstream(newer, tmp_path / "ds", DeepStreamOptions(sources=2))


def test_the_cli_refuses_a_graph_without_the_deepstream_tail(folder, tmp_path, capsys):
    assert main(["deepstream", "--model", str(folder / "reference.onnx"), "-o", str(tmp_path / "x")]) == 2
    assert "needs the 'deepstream' tail: export it with that tail" in capsys.readouterr().err


def test_a_precision_nvinfer_cannot_run_is_refused_before_anything_is_written(folder, tmp_path):
    """The CPU INT8 recipe's graph (U8 activations with zero points, which TensorRT does not take)
    says so from its recipe (``nvinfer_mode=None``), before a file is written."""
    from retina_edge.deepstream.package import DeepStreamOptions, write_deepstream
    from retina_edge.runtime.core.model_file import embed_deployment

    (graph_path,) = (folder / "ds").glob("*.onnx")
    graph = onnx.load(str(graph_path))
    embed_deployment(graph, read_deployment(graph_path).override(precision="int8", target="cpu"))
    onnx.save(graph, str(tmp_path / "cpu-int8.onnx"))
    with pytest.raises(RetinaEdgeError, match="nvinfer cannot run int8 for cpu graphs"):
        write_deepstream(tmp_path / "cpu-int8.onnx", tmp_path / "out", DeepStreamOptions())
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    from retina_edge.imageio import write_image_rgb

    root = tmp_path_factory.mktemp("ds-calib")
    for index in range(12):
        write_image_rgb(root / f"{index:02d}.jpg", render_image(SynthConfig(seed=5), index)[0])
    return root


def test_int8_and_fp16_graphs_build_like_the_other_tails(calib_dir, tmp_path):
    """Calibration sees what nvinfer gives the graph (RGB 0..1, so the input range is <= 1, not the
    ~2.6 of normalised images); the precision graphs keep the parser's types, and their configs
    the matching network-mode (INT8 from Q/DQ: no int8-calib-file)."""
    import json

    from retina_edge.calib.build import BuildOptions, CalibrationOptions, build_precision_graph
    from retina_edge.deepstream.package import DeepStreamOptions, write_deepstream
    from retina_edge.export.onnx_export import ExportOptions
    from retina_edge.preprocess import PreprocessConfig

    model = tiny_model()
    export = ExportOptions(preprocess=PreprocessConfig(96, 128), tail="deepstream", batch=(1, 1, 2))
    calibration = CalibrationOptions(source=str(calib_dir), count=8, min_images=4, cache_dir=tmp_path / "cache")
    int8 = build_precision_graph(model, tmp_path / "int8.onnx", export=export, build=BuildOptions(
        precision="int8", target="tensorrt", calibration=calibration)).model_path
    fp16 = build_precision_graph(model, tmp_path / "fp16.onnx", export=export, build=BuildOptions(precision="fp16")).model_path
    (stats,) = (tmp_path / "cache").glob("*.json")
    assert 0.9 < json.loads(stats.read_text())["ranges"]["images"][1] <= 1.0
    assert Counter(node.op_type for node in onnx.load(str(int8)).graph.node)["QuantizeLinear"] > 20
    for path, mode in ((int8, "1"), (fp16, "2")):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [o.type for o in session.get_outputs()] == ["tensor(int32)"] + ["tensor(float)"] * 3
        write_deepstream(path, tmp_path / path.stem, DeepStreamOptions())
        config = read_config(tmp_path / path.stem / "config_infer_primary.txt")["property"]
        assert config["network-mode"] == mode and "int8-calib-file" not in config
    assert "no int8-calib-file is needed" in (tmp_path / "int8" / "config_infer_primary.txt").read_text()


def test_the_release_check_comes_before_the_export_of_weights(tmp_path, monkeypatch, capsys):
    """A target that cannot work was refused only after a 5 s export."""
    import retina_edge.export.onnx_export as onnx_export

    def no_export(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("exported before checking the target")

    monkeypatch.setattr(onnx_export, "export_onnx", no_export)
    assert main(["deepstream", "--model", "preset:synth", "-o", str(tmp_path / "ds"), "--tensorrt", "11.4.1"]) == 2
    assert "no DeepStream release runs TensorRT 11" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("flags,said", [
    (["--uri", "not a uri"], "'not a uri' is not a URI DeepStream can open: give one such as file:///videos/front.mp4"),
    (["--uri", "file:///a.mp4", "--uri", "rtsp://cam/s\n[sink0]"], "is not a URI DeepStream can open"),
    (["--sources", "1000"], "1000 sources: one deepstream-app config runs on one GPU"),
])
def test_sources_deepstream_could_not_open_are_refused_before_any_work(flags, said, tmp_path, capsys):
    assert main(["deepstream", "--model", "preset:synth", "-o", str(tmp_path / "ds"), *flags]) == 2
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1 and not (tmp_path / "ds").exists()


def test_a_config_edited_by_hand_is_not_replaced_unasked(folder, tmp_path, capsys):
    from retina_edge.deepstream.package import INFER_CONFIG, DeepStreamOptions, write_deepstream

    model, out = folder / "ds" / "model.onnx", tmp_path / "ds"
    write_deepstream(model, out, DeepStreamOptions(sources=2))
    write_deepstream(model, out, DeepStreamOptions(sources=3))  # its own files are rewritten freely
    edited = (out / INFER_CONFIG).read_text() + "# tuned by hand\n"
    (out / INFER_CONFIG).write_text(edited)
    with pytest.raises(RetinaEdgeError, match=f"holds {INFER_CONFIG}, changed since retina-edge wrote it"):
        write_deepstream(model, out, DeepStreamOptions(sources=2))
    assert (out / INFER_CONFIG).read_text() == edited
    assert main(["deepstream", "--model", str(model), "-o", str(out)]) == 2
    assert "(see --replace-edited)" in capsys.readouterr().err and (out / INFER_CONFIG).read_text() == edited
    assert main(["deepstream", "--model", str(model), "-o", str(out), "--replace-edited"]) == 0
    assert "tuned by hand" not in (out / INFER_CONFIG).read_text()
