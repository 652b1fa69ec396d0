"""streams="auto": several inferences in flight only where a probe shows more throughput; cached;
one stream for live sources, single images and engines."""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np
import pytest

from retina_edge.cli.detect import make_detector
from retina_edge.export.onnx_export import ExportOptions, export_onnx
from retina_edge.preprocess import PreprocessConfig
from retina_edge.runtime import Detector
from retina_edge.runtime.backends import BackendOptions
from retina_edge.runtime.core import streams_choice
from retina_edge.runtime.core.streams_choice import choose_streams
from tiny import tiny_model

SETTINGS = {"device": None, "threads": None, "openvino_precision": "f32"}


def inference_only(backend):  # noqa: ANN001, ANN201
    return backend.run(None)


class SharedCores:
    """A stand-in backend whose streams share the cores: one stream runs in ``seconds``; with N
    streams a run has 1/N of the cores and takes ``N * seconds * slowdown`` (below 1: the model
    scales badly over many cores, so streams gain; above 1: they lose)."""

    def __init__(self, streams: int, *, seconds: float, slowdown: float) -> None:
        self.duration = seconds * streams * (slowdown if streams > 1 else 1.0)
        self.streams, self.closed, self.calls, self.most = streams, False, 0, 0
        self.running, self.lock = 0, threading.Lock()

    def run(self, batch):  # noqa: ANN001, ANN201
        with self.lock:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(self.duration)
        with self.lock:
            self.running -= 1
        return {}

    def close(self) -> None:
        self.closed = True


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("streams")
    return export_onnx(tiny_model(), out / "m.onnx", ExportOptions(preprocess=PreprocessConfig(128, 160), tail="nms"))


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RETINA_EDGE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(streams_choice, "usable_cores", lambda: 2)


def loader(loaded: list, slowdown: float):
    def load(count):  # noqa: ANN001, ANN202
        loaded.append(SharedCores(count, seconds=0.02, slowdown=slowdown))
        return loaded[-1]

    return load


@pytest.mark.parametrize(("slowdown", "expected"), [(0.6, 2), (1.5, 1)])
def test_probe_keeps_several_streams_only_when_they_raise_throughput(onnx_path, two_cores, slowdown, expected):
    loaded = []
    single = SharedCores(1, seconds=0.02, slowdown=slowdown)
    choice, backend = choose_streams(onnx_path, single, loader(loaded, slowdown), backend="onnxruntime", settings=SETTINGS,
                                     work=inference_only)
    many = loaded[0]
    assert choice.streams == expected and choice.reason == "probe" and set(choice.frames_per_s) == {1, 2}
    assert many.most == 2 and single.most == 1  # the probe really ran two at once, and one alone
    assert backend is (many if expected == 2 else single) and not backend.closed
    assert (single if expected == 2 else many).closed

    # Cached: no probe; the winner is loaded (and the single-stream backend swapped out if it lost).
    loaded.clear()
    again = SharedCores(1, seconds=0.02, slowdown=slowdown)
    cached, backend = choose_streams(onnx_path, again, loader(loaded, slowdown), backend="onnxruntime", settings=SETTINGS,
                                     work=inference_only)
    assert cached.streams == expected and cached.reason == "measured earlier on this machine"
    assert cached.frames_per_s == choice.frames_per_s and again.calls == 0
    assert (backend is loaded[0] and again.closed) if expected == 2 else (backend is again and not loaded)


def test_the_probe_times_whole_frames_not_inference_alone(onnx_path, two_cores):
    """Two streams lower inference throughput here (slowdown 1.2: 42 against 50 runs/s) but, with
    20 ms of pre- and post-processing per frame that one frame in flight leaves unoverlapped,
    raise frames per second (29 against 25): what the pipeline's workers see."""
    def frame(backend):  # noqa: ANN001, ANN202
        time.sleep(0.02)
        return backend.run(None)

    loaded = []
    choice, backend = choose_streams(onnx_path, SharedCores(1, seconds=0.02, slowdown=1.2), loader(loaded, 1.2),
                                     backend="onnxruntime", settings=SETTINGS, work=frame)
    assert choice.streams == 2 and backend is loaded[0], choice.describe()


def test_no_probe_for_engines_or_one_core(onnx_path, monkeypatch):
    single = SharedCores(1, seconds=0.02, slowdown=1.0)
    unused = loader([], 1.0)
    choice, backend = choose_streams(onnx_path, single, unused, backend="tensorrt", settings=SETTINGS,
                                     work=inference_only)
    assert (choice.streams, choice.reason, backend, single.calls) == (1, "one execution context", single, 0)
    monkeypatch.setattr(streams_choice, "usable_cores", lambda: 1)
    choice, _ = choose_streams(onnx_path, single, unused, backend="onnxruntime", settings=SETTINGS, work=inference_only)
    assert (choice.streams, choice.reason, single.calls) == (1, "one usable core", 0)


def test_a_failed_probe_closes_what_it_loaded(onnx_path, two_cores):
    class Broken(SharedCores):
        def run(self, batch):  # noqa: ANN001, ANN201
            raise RuntimeError("device lost")

    single, loaded = SharedCores(1, seconds=0.02, slowdown=1.0), []

    def load(count):  # noqa: ANN001, ANN202
        loaded.append(Broken(count, seconds=0.02, slowdown=1.0))
        return loaded[-1]

    with pytest.raises(RuntimeError, match="device lost"):
        choose_streams(onnx_path, single, load, backend="onnxruntime", settings=SETTINGS, work=inference_only)
    assert single.closed and loaded[0].closed


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_detector_streams_auto_on_the_real_backends(onnx_path, two_cores, backend):
    image = np.random.default_rng(0).integers(0, 255, (100, 140, 3), dtype=np.uint8)
    with Detector(onnx_path, backend=backend) as one, Detector(onnx_path, backend=backend, options=BackendOptions(streams="auto")) as auto:
        assert one.streams_choice is None and one.streams == 1
        assert auto.streams_choice.reason == "probe" and auto.streams == auto.streams_choice.streams in (1, 2)
        assert set(auto.streams_choice.frames_per_s) == {1, 2}
        expected, got = one.detect(image)[0], auto.detect(image)[0]
        np.testing.assert_allclose(got.boxes, expected.boxes, atol=1e-4)
    with Detector(onnx_path, backend=backend, options=BackendOptions(streams="auto")) as cached:
        assert cached.streams_choice.reason == "measured earlier on this machine"
        assert cached.streams == auto.streams


@pytest.mark.parametrize("bad", [0, "2", 1.5])
def test_detector_rejects_bad_streams(onnx_path, bad):
    with pytest.raises(Exception, match="streams must be 'auto' or at least 1"):
        Detector(onnx_path, options=BackendOptions(streams=bad))


def test_cli_auto_measures_only_where_frames_wait(onnx_path, two_cores):
    args = argparse.Namespace(model=str(onnx_path), backend="onnxruntime", device=None, threads=None, ov_precision="f32",
                              cuda_graph=False, streams="auto")
    with make_detector(args) as live:
        assert live.streams == 1 and live.streams_choice is None  # live source, single images: no probe
    with make_detector(args, frames_wait=True) as files:
        assert files.streams_choice is not None
    args.streams = 2
    with make_detector(args, frames_wait=True) as given:
        assert given.streams == 2 and given.streams_choice is None
