"""Serving with NVIDIA Triton Inference Server: generated configs against Triton's own proto, and the
real ``tritonserver`` (the CPU build with the Python backend that ships in ``nvidia-pytriton``)
started on loopback ports: concurrent clients, batching, bad requests, a server that restarts
under a running pipeline, the ensemble, ``retina-edge serve`` and ``detect --model triton://``."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from assertions import same_detections

from retina_edge.errors import RetinaEdgeError
from retina_edge.imageio import decode_image_bytes, encode_image_rgb
from retina_edge.runtime import Detector, TritonDetector
from retina_edge.runtime.remote.triton_client import ImagesRefusedError
from retina_edge.data.synth import SynthConfig, render_image
from retina_edge.triton.repository import RepositoryOptions, write_repository
from retina_edge.triton.server import Ports, TritonServer

HAS_SERVER = shutil.which("tritonserver") is not None or importlib.util.find_spec("pytriton") is not None
needs_server = pytest.mark.skipif(not HAS_SERVER, reason="no tritonserver (pip install --no-deps nvidia-pytriton)")


def free_ports() -> Ports:
    sockets = [socket.socket() for _ in range(3)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = Ports(*(s.getsockname()[1] for s in sockets))
    for s in sockets:
        s.close()
    return ports


def jpeg(image: np.ndarray) -> bytes:
    return encode_image_rgb(image, ".jpg", quality=90)


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> dict[str, Path]:  # noqa: ANN001
    """The tiny model's FP32 graphs, one per tail, batch 1..4, keeping scores above 0.27: the synthetic
    scenes of :func:`images` have detections, a uniform grey image (max score 0.26) has none."""
    from tiny import tiny_model

    from retina_edge.calib.build import BuildOptions, build_precision_graph
    from retina_edge.export.onnx_export import ExportOptions
    from retina_edge.preprocess import PreprocessConfig

    folder, model = tmp_path_factory.mktemp("triton-graphs"), tiny_model(score_thresh=0.27)
    for tail in TAILS:
        export = ExportOptions(preprocess=PreprocessConfig(64, 96), tail=tail, batch=(1, 2, 4))
        build_precision_graph(model, folder / f"{tail}.onnx", export=export, build=BuildOptions(precision="fp32"))
    return {**{tail: folder / f"{tail}.onnx" for tail in TAILS}, "frame": frame_graph(folder / "nms.onnx", folder / "frame.onnx")}


def frame_graph(plain: Path, output: Path) -> Path:
    """``plain`` (an nms graph) in the frame steps for 90x70 BGR frames, as export writes one."""
    import dataclasses

    import onnx

    from retina_edge.export.frame_graph import wrap_frame
    from retina_edge.preprocess import FrameInput
    from retina_edge.runtime.core.model_file import embed_deployment, read_deployment

    graph, metadata = onnx.load(str(plain)), dataclasses.replace(read_deployment(plain), frame=FrameInput(70, 90))
    wrap_frame(graph, metadata)
    embed_deployment(graph, metadata)
    onnx.save(graph, str(output))
    return output


TAILS = ("none", "decode", "nms", "deepstream")


def images(count: int, seed: int = 5, *, empty_every: int = 0) -> list[np.ndarray]:
    """Synthetic scenes of mixed sizes; with ``empty_every`` N, every Nth a grey image (no detections)."""
    scenes = [cv2.resize(render_image(SynthConfig(seed=seed), i)[0], (90 + 37 * (i % 5), 70 + 23 * (i % 7)))
              for i in range(count)]
    return [np.full_like(scene, 128) if empty_every and i % empty_every == empty_every - 1 else scene
            for i, scene in enumerate(scenes)]


# --- configs against Triton's model_config.proto (no server) -------------------------------------

def parse_config(folder: Path):  # noqa: ANN201
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


@pytest.mark.parametrize("tail", ["none", "decode", "nms"])
def test_generated_configs_parse_and_the_ensemble_is_wired(graphs, tmp_path, tail):
    from retina_edge.runtime.tensorrt.engine_file import write_engine_file
    from retina_edge.runtime.core.model_file import read_deployment

    engine = write_engine_file(tmp_path / f"{tail}.engine", b"plan", metadata=read_deployment(graphs[tail]),
                               tensorrt_version="10.3.0", device={"name": "Orin"}, build={})
    for model, ensemble in ((graphs[tail], False), (graphs[tail], True), (engine, True)):
        repository = tmp_path / f"repo-{model.suffix[1:]}-{ensemble}"
        folders = write_repository(model, repository, RepositoryOptions(ensemble=ensemble))
        configs = {folder.name: parse_config(folder) for folder in folders}
        top = configs["retina_edge"]
        assert [o.name for o in top.output] == ["boxes", "scores", "labels"]
        assert top.max_batch_size == (4 if ensemble else 8)  # an ensemble batches up to the graph's largest batch
        if not ensemble:
            continue
        network = configs["retina_edge_network"]
        assert network.platform == ("tensorrt_plan" if model == engine else "onnxruntime_onnx")
        assert (repository / "retina_edge_network" / "1" / ("model.plan" if model == engine else "model.onnx")).is_file()
        produced = {"image"}
        for step in top.ensemble_scheduling.step:  # each step reads what earlier steps produced
            step_config = configs[step.model_name]
            assert set(step.input_map) == {i.name for i in step_config.input} and set(step.input_map.values()) <= produced
            assert set(step.output_map) == {o.name for o in step_config.output}
            assert not produced & set(step.output_map.values())  # Triton: a tensor in one output map only
            produced |= set(step.output_map.values())
        assert {"boxes", "scores", "labels"} <= produced


@pytest.mark.parametrize("tail", [*TAILS, "frame"])
def test_network_config_dims_and_types_are_the_exported_graphs(graphs, tail):
    """Triton refuses a model whose config disagrees with the graph in a type (the deepstream tail's
    int32 count and float labels once were configured as the nms tail's int64; a frame graph takes uint8)."""
    import onnx

    from retina_edge.runtime.core.model_file import read_deployment
    from retina_edge.triton.configs import network_tensors

    graph = onnx.load(str(graphs[tail])).graph
    triton_type = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.INT64: "TYPE_INT64",
                   onnx.TensorProto.INT32: "TYPE_INT32", onnx.TensorProto.UINT8: "TYPE_UINT8"}
    exported = {v.name: (triton_type[v.type.tensor_type.elem_type], tuple(d.dim_value for d in v.type.tensor_type.shape.dim[1:]))
                for v in [*graph.input, *graph.output]}
    inputs, outputs = network_tensors(read_deployment(graphs[tail]))
    assert {name: (dtype, dims) for name, dtype, dims in (*inputs, *outputs)} == exported


def test_repository_refuses_what_triton_could_not_serve(graphs, tmp_path):
    with pytest.raises(RetinaEdgeError, match="use letters"):
        RepositoryOptions(name="a b")
    with pytest.raises(RetinaEdgeError, match="needs a TensorRT engine"):
        write_repository(graphs["decode"], tmp_path, RepositoryOptions(ensemble=True, network_backend="tensorrt_plan"))
    # Before: accepted and ignored (one Python model runs the whole graph without --ensemble).
    with pytest.raises(RetinaEdgeError, match="ask for an ensemble or leave the backend out"):
        write_repository(graphs["decode"], tmp_path / "plain", RepositoryOptions(network_backend="python"))
    assert not (tmp_path / "plain").exists()
    (tmp_path / "foreign.onnx").write_bytes(b"\x08\x07")
    with pytest.raises(RetinaEdgeError):
        write_repository(tmp_path / "foreign.onnx", tmp_path / "repo", RepositoryOptions())
    assert not (tmp_path / "repo").exists()


# --- the real server --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(graphs, tmp_path_factory):  # noqa: ANN001, ANN201
    """A server on loopback with the default model (decode graph) and an ensemble per tail
    (``ensemble_<tail>``; the network through the runtime: the CPU build has no ONNX Runtime backend)."""
    if not HAS_SERVER:
        pytest.skip("no tritonserver (pip install --no-deps nvidia-pytriton)")
    repository = tmp_path_factory.mktemp("repository")
    write_repository(graphs["decode"], repository, RepositoryOptions(max_batch=4, max_queue_delay_us=20000))
    for tail in TAILS:
        write_repository(graphs[tail], repository, RepositoryOptions(name=f"ensemble_{tail}", ensemble=True,
                                                                      network_backend="python"))
    write_repository(graphs["frame"], repository, RepositoryOptions(name="frame", network_backend="python"))
    ports = free_ports()
    with TritonServer(repository, ports=ports, log_file=repository.parent / "tritonserver.log") as server:
        server.wait_ready(120)
        yield server


def model_stats(server: TritonServer, model: str) -> dict:
    with urllib.request.urlopen(f"http://{server.url('http')}/v2/models/{model}/stats", timeout=10) as answer:
        return json.loads(answer.read())["model_stats"][0]


def server_errors(server: TritonServer, start: int) -> list[str]:
    """Error lines and tracebacks the server logged after byte ``start`` of its log."""
    lines = server.log_file.read_bytes()[start:].decode(errors="replace").splitlines()
    return [line for line in lines if line.startswith("E") and line[1:5].isdigit() or "Traceback" in line or "Error" in line]


@needs_server
def test_eight_concurrent_clients_get_the_in_process_answers_and_are_batched(served, graphs):
    """48 JPEGs of mixed sizes, every sixth with no detections, 6 per client: every request answered,
    as the in-process Detector answers, batched, and nothing in the server's log."""
    encoded = [jpeg(image) for image in images(48, empty_every=6)]
    with Detector(graphs["decode"]) as detector:
        expected = detector.detect([decode_image_bytes(data) for data in encoded])
    assert sum(len(found.boxes) == 0 for found in expected) == 8 and all(len(found.boxes) for found in expected[:5])
    log_start, before = served.log_file.stat().st_size, model_stats(served, "retina_edge")
    answers: dict[int, list] = {}

    def client(index: int) -> None:
        with TritonDetector(f"triton://{served.url('grpc')}/retina_edge", retries=0) as remote:
            answers[index] = remote.detect_encoded(encoded[index * 6 : index * 6 + 6])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(answers) == list(range(8))  # a client whose request failed has no answers
    same_detections(expected, [found for i in range(8) for found in answers[i]])
    for _ in range(50):  # Triton counts an inference after answering it: wait (bounded) for the last ones
        after = model_stats(served, "retina_edge")
        inferences = int(after["inference_count"]) - int(before["inference_count"])
        if inferences >= 48:
            break
        time.sleep(0.1)
    executions = int(after["execution_count"]) - int(before["execution_count"])
    assert inferences == 48 and executions < inferences  # the dynamic batcher gathered requests
    assert server_errors(served, log_start) == []


@needs_server
def test_a_server_without_a_gpu_logs_none_of_the_cuda_and_nvml_failures(served):
    """On a CPU machine tritonserver tried pinned memory, NVML and DCGM on every start and logged each
    failing; serve now starts it without them there."""
    from retina_edge.triton.server import has_nvidia_gpu

    if has_nvidia_gpu():
        pytest.skip("this machine has an NVIDIA GPU")
    log = served.log_file.read_text()
    assert "successfully loaded 'retina_edge'" in log
    for noise in ("Unable to allocate pinned system memory", "Failed to initialize NVML", "DCGM unable to start"):
        assert noise not in log


@needs_server
def test_http_client_and_the_detector_call(served, graphs):
    scenes = images(3)
    with Detector(graphs["decode"]) as detector, TritonDetector(served.url("http"), protocol="http") as remote:
        same_detections(detector.detect(scenes), remote.detect(scenes))  # PNG: the server sees the same pixels
        assert remote.class_names == detector.class_names and remote.metadata == detector.metadata


@needs_server
def test_a_malformed_request_is_refused_and_the_server_keeps_serving(served):
    with TritonDetector(served.url("grpc")) as remote:
        with pytest.raises(RetinaEdgeError, match="refused the request: cannot decode image"):
            remote.detect_encoded([b"not an image"])
        with pytest.raises(ImagesRefusedError, match="1 of 3 images refused; image 1: .*cannot decode") as refused:
            remote.detect_encoded([jpeg(images(1)[0]), b"\xff\xd8", jpeg(images(2)[1])])
        first, junk, last = refused.value.answers  # the good answers are kept
        assert len(first.boxes) and junk is None and len(last.boxes)
        request = urllib.request.Request(f"http://{served.url('http')}/v2/models/retina_edge/infer", method="POST",
                                         data=json.dumps({"inputs": [{"name": "wrong", "shape": [1, 1], "datatype": "UINT8",
                                                                      "data": [1]}]}).encode())
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(request, timeout=10)
        assert len(remote.detect(images(1))) == 1


@needs_server
@pytest.mark.parametrize("tail", ["none", "decode", "nms"])
def test_the_ensemble_of_every_tail_loads_and_runs_on_the_real_server(served, graphs, tail):
    scenes = images(6, empty_every=3)
    with Detector(graphs[tail]) as detector, TritonDetector(served.url("grpc"), f"ensemble_{tail}") as remote:
        same_detections(detector.detect(scenes), remote.detect(scenes))
    assert int(model_stats(served, f"ensemble_{tail}_network")["inference_count"]) >= 6


@needs_server
def test_a_frame_graph_is_served_as_one_network_model_taking_frames(served, graphs):
    """Frames in (uint8 pixels, no encoding), final detections out, as the in-process Detector gives
    them; a frame of another size is refused before anything is sent. (The network model runs through
    the runtime here: the CPU build has no ONNX Runtime backend; onnxruntime_onnx serves the same graph.)"""
    frames = [cv2.resize(scene, (90, 70)) for scene in images(6, empty_every=3)]
    with Detector(graphs["frame"]) as detector, TritonDetector(served.url("grpc"), "frame") as remote:
        assert remote.metadata == detector.metadata and remote.metadata.frame is not None
        same_detections(detector.detect(frames), remote.detect(frames))
        same_detections(detector.detect(frames[:2]), remote.detect_encoded([encode_image_rgb(f, ".png") for f in frames[:2]]))
        with pytest.raises(RetinaEdgeError, match="image 0 is 96x70; this graph takes 90x70 frames only"):
            remote.detect(np.zeros((70, 96, 3), np.uint8))
    assert int(model_stats(served, "frame")["inference_count"]) >= 8


@needs_server
def test_a_higher_score_threshold_applies_on_the_client_a_lower_one_is_refused(served, graphs):
    scenes = images(2)
    with Detector(graphs["decode"], score_thresh=0.6) as detector, TritonDetector(served.url("grpc"), score_thresh=0.6) as remote:
        same_detections(detector.detect(scenes), remote.detect(scenes))
    with pytest.raises(RetinaEdgeError, match="a lower score threshold"):
        TritonDetector(served.url("grpc"), score_thresh=0.01)


@needs_server
def test_detect_cli_against_a_server(served, tmp_path, capsys):
    from retina_edge.cli.main import main
    from retina_edge.imageio import write_image_rgb

    for index, image in enumerate(images(3)):
        write_image_rgb(tmp_path / "in" / f"{index}.jpg", image)
    assert main(["detect", "--model", f"triton://{served.url('grpc')}/retina_edge", "--source", str(tmp_path / "in"),
                 "--save-json", str(tmp_path / "d.json")]) == 0
    assert len(json.loads((tmp_path / "d.json").read_text())) > 0
    assert main(["detect", "--model", f"triton://{served.url('grpc')}/retina_edge", "--threads", "2",
                 "--source", str(tmp_path / "in")]) == 2
    assert "the server decides" in capsys.readouterr().err


# --- a server that goes away; serve's lifetime --------------------------------------------------

@needs_server
def test_the_pipeline_reconnects_when_the_server_restarts(graphs, tmp_path, caplog):
    from retina_edge.runtime.video import Pipeline, PipelineConfig
    from retina_edge.data.synth_video import SyntheticVideo, write_video

    video = write_video(tmp_path / "in.mp4", SyntheticVideo(width=160, height=120), frames=20)
    repository = tmp_path / "repository"
    write_repository(graphs["decode"], repository, RepositoryOptions())
    ports = free_ports()
    server = TritonServer(repository, ports=ports, log_file=tmp_path / "first.log")
    server.wait_ready(120)
    processed, restarted = [], None
    try:
        remote = TritonDetector(f"triton://{server.url('grpc')}/retina_edge", retries=12, backoff=0.25)
        with caplog.at_level(logging.WARNING), Pipeline(remote, PipelineConfig(mode="every")) as pipeline:
            for result in pipeline.run(str(video)):
                processed.append(result.index)
                if len(processed) == 5:  # the server goes away mid-stream and comes back
                    server.stop()
                    restarted = TritonServer(repository, ports=ports, log_file=tmp_path / "second.log")
        remote.close()
    finally:
        for running in (server, restarted):
            if running is not None:
                running.stop()
    assert processed == list(range(20))
    assert "unreachable" in caplog.text and "answered again" in caplog.text


@needs_server
def test_serve_prints_its_endpoints_and_stops_on_sigint(graphs, tmp_path):
    repository = tmp_path / "repository"
    write_repository(graphs["decode"], repository, RepositoryOptions())
    ports = free_ports()
    command = [sys.executable, "-m", "retina_edge.cli.main", "serve", "--repo", str(repository),
               "--http-port", str(ports.http), "--grpc-port", str(ports.grpc), "--metrics-port", str(ports.metrics)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline, line = time.monotonic() + 120, ""
        while time.monotonic() < deadline and "serving" not in line:
            line = process.stdout.readline()
            assert line or process.poll() is None, "serve exited early"
        assert f"gRPC 127.0.0.1:{ports.grpc}" in line
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130 and time.monotonic() - started < 20  # as the shell reports Ctrl-C
    finally:
        if process.poll() is None:
            process.kill()
    leftovers = [p for p in Path("/proc").glob("[0-9]*") if _cmdline(p).count(str(repository))]
    assert not leftovers  # tritonserver and its Python stubs are gone


def _serve(repository: Path, ports: Ports, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "retina_edge.cli.main", "serve", "--repo", str(repository), "--http-port",
               str(ports.http), "--grpc-port", str(ports.grpc), "--metrics-port", str(ports.metrics), *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _read_until(process: subprocess.Popen, words: str, seconds: float = 120) -> str:
    """serve's output up to the first line holding ``words`` (bounded)."""
    deadline, seen = time.monotonic() + seconds, []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        seen.append(line)
        if words in line or not line:
            break
    assert words in seen[-1], "".join(seen)[-3000:]
    return "".join(seen)


def _abort_with_a_huge_declared_input(ports: Ports) -> None:
    """The request that aborts Triton 2.51 (std::bad_alloc in its HTTP front end, before any model)."""
    body = json.dumps({"inputs": [{"name": "image", "shape": [1, 99999999999], "datatype": "UINT8", "data": [1, 2, 3]}]})
    request = urllib.request.Request(f"http://127.0.0.1:{ports.http}/v2/models/retina_edge/infer", method="POST",
                                     data=body.encode())
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(request, timeout=30)


@needs_server
def test_serve_keeps_restarting_a_server_requests_abort_with_growing_waits(graphs, tmp_path):
    """Each crafted request aborts Triton 2.51; serve brings it back every time (1 s, then 2 s: the
    backoff of RestartPolicy), where a bound of five restarts in ten minutes once ended the service."""
    repository = tmp_path / "repository"
    write_repository(graphs["decode"], repository, RepositoryOptions())
    ports = free_ports()
    process = _serve(repository, ports)
    try:
        _read_until(process, "serving")
        for deaths, wait in ((1, 1), (2, 2)):
            _abort_with_a_huge_declared_input(ports)
            assert f"{deaths} time(s) in 10 minutes; restarting it in {wait} s" in _read_until(process, "restarting it")
            _read_until(process, "serving")
        with TritonDetector(f"triton://127.0.0.1:{ports.grpc}/retina_edge") as remote:
            assert len(remote.detect(images(1))[0].boxes)
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 130
    finally:
        if process.poll() is None:
            process.kill()
    leftovers = [p for p in Path("/proc").glob("[0-9]*") if _cmdline(p).count(str(repository))]
    assert not leftovers  # the aborted servers' Python stubs were reaped too


def test_the_restart_policy_never_gives_up_by_default_and_waits_at_most_30_s():
    from retina_edge.triton.server import RestartPolicy

    policy = RestartPolicy()
    assert [policy.delay(n) for n in (1, 2, 3, 6, 7, 100)] == [1, 2, 4, 30, 30, 30]  # six deaths ended serve before
    assert policy.recent([0.0, 100.0, 650.0], now=700.0) == [650.0]  # ten quiet minutes: back to 1 s
    bounded = RestartPolicy(max_restarts=1)
    assert bounded.delay(1) == 1 and bounded.delay(2) is None
    with pytest.raises(RetinaEdgeError, match="max_restarts must be at least 0"):
        RestartPolicy(max_restarts=-1)


def test_serve_on_all_interfaces_warns_and_a_taken_port_is_one_line(graphs, tmp_path, capsys):
    from retina_edge.cli.main import main

    repository = tmp_path / "repository"
    write_repository(graphs["decode"], repository, RepositoryOptions())
    ports = free_ports()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports.grpc))
        taken.listen()
        assert main(["serve", "--repo", str(repository), "--host", "0.0.0.0", "--http-port", str(ports.http),
                     "--grpc-port", str(ports.grpc), "--metrics-port", str(ports.metrics)]) == 2
    err = capsys.readouterr().err
    assert "gRPC listens on 0.0.0.0: anyone who reaches this machine can send requests" in err
    assert "HTTP stays on 127.0.0.1" in err
    assert f"error: the gRPC port {ports.grpc} on 0.0.0.0 is taken" in err and "Traceback" not in err


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_model_folders_get_the_umasks_mode_so_a_server_of_another_user_reads_them(graphs, tmp_path, umask):
    """A folder built aside and renamed into place was 0700 (mkdtemp's), so tritonserver running as
    another user (a container with --user) could not read the model."""
    import os
    import stat

    previous = os.umask(umask)
    try:
        folders = write_repository(graphs["decode"], tmp_path / "repo", RepositoryOptions(ensemble=True,
                                                                                          network_backend="python"))
    finally:
        os.umask(previous)
    assert len(folders) == 4
    for path in [*folders, *(p for folder in folders for p in folder.rglob("*"))]:
        wanted = (0o777 if path.is_dir() else 0o666) & ~umask
        assert stat.S_IMODE(path.stat().st_mode) == wanted, path


def test_equal_ports_are_one_line_before_any_server_starts(graphs, tmp_path, capsys):
    from retina_edge.cli.main import main

    repository = tmp_path / "repository"
    write_repository(graphs["decode"], repository, RepositoryOptions())
    assert main(["serve", "--repo", str(repository), "--http-port", "8123", "--grpc-port", "8123"]) == 2
    err = capsys.readouterr().err
    assert "error: the HTTP and gRPC ports are both 8123: each endpoint needs its own port (see --http-port, " \
           "--grpc-port)" in err and err.count("\n") == 1


def test_two_writers_of_one_repository_at_once_both_succeed(graphs, tmp_path):
    repository, failures = tmp_path / "repository", []

    def write() -> None:
        try:
            for _ in range(5):
                write_repository(graphs["decode"], repository, RepositoryOptions())
        except Exception as error:  # noqa: BLE001 - collected for the assertion
            failures.append(error)

    threads = [threading.Thread(target=write) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    assert sorted(p.name for p in repository.iterdir()) == ["retina_edge"]  # no staging folder left
    parse_config(repository / "retina_edge")


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_no_server_is_retried_then_reported(caplog):
    from retina_edge.runtime.remote.triton_client import ServerLostError

    port = free_ports().grpc  # nothing listens there
    with caplog.at_level(logging.WARNING), pytest.raises(ServerLostError, match="did not answer after 2 retries"):
        TritonDetector(f"triton://127.0.0.1:{port}/retina_edge", retries=2, backoff=0.05)
    assert caplog.text.count("unreachable") == 2 and ServerLostError.exit_code == 1
