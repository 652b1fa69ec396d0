"""backend="auto" on ONNX files: measured per model file and machine, cached, explicit choices win."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from retina_edge.cache import cache_root
from retina_edge.export.onnx_export import ExportOptions, export_onnx
from retina_edge.preprocess import PreprocessConfig
from retina_edge.resources import SETTLE_SECONDS
from retina_edge.runtime import Detector
from retina_edge.runtime.core import backend_choice
from retina_edge.runtime.core.backend_choice import BackendChoice, choose_and_load, pick
from spinning import Cores
from tiny import tiny_model

SETTINGS = {"threads": None, "streams": 1, "openvino_precision": "f32"}


class SleepyBackend:
    """Runs in a fixed time; records its calls and whether it was closed."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.calls, self.closed = seconds, 0, False

    def run(self, batch):  # noqa: ANN001, ANN201
        self.calls += 1
        time.sleep(self.seconds)
        return {}

    def close(self) -> None:
        self.closed = True


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("choice")
    return export_onnx(tiny_model(), out / "m.onnx", ExportOptions(preprocess=PreprocessConfig(128, 160), tail="nms"))


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RETINA_EDGE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def loader(speeds: dict[str, float], loaded: list):
    def load(name):  # noqa: ANN001, ANN202
        backend = SleepyBackend(speeds[name])
        loaded.append((name, backend))
        return backend

    return load


def test_pick_needs_a_clear_win_to_leave_onnxruntime():
    assert pick({"onnxruntime": 100.0, "openvino": 90.0}) == "openvino"
    assert pick({"onnxruntime": 100.0, "openvino": 97.0}) == "onnxruntime"  # within noise
    assert pick({"onnxruntime": 80.0, "openvino": 100.0}) == "onnxruntime"


@pytest.mark.parametrize("fast", ["onnxruntime", "openvino"])
def test_probe_picks_the_faster_keeps_it_loaded_and_closes_the_other(onnx_path, fresh_cache, fast):
    from retina_edge.runtime.core.model_file import read_deployment

    metadata = read_deployment(onnx_path)
    speeds = {"onnxruntime": 0.03, "openvino": 0.03, fast: 0.001}
    loaded = []
    choice, backend = choose_and_load(onnx_path, metadata, loader(speeds, loaded), device=None, settings=SETTINGS)
    assert choice.backend == fast and choice.reason == "probe" and set(choice.median_ms) == set(speeds)
    by_name = dict(loaded)
    assert backend is by_name[fast] and not backend.closed
    assert all(b.closed for name, b in loaded if name != fast)
    assert all(b.calls == backend_choice.PROBE_RUNS + 1 for _, b in loaded)

    # Cached: the next load measures nothing and loads only the winner, even if speeds changed.
    loaded.clear()
    again, backend = choose_and_load(onnx_path, metadata, loader({"onnxruntime": 0.0, "openvino": 0.0}, loaded),
                                     device=None, settings=SETTINGS)
    assert again.backend == fast and again.reason == "measured earlier on this machine"
    assert [name for name, _ in loaded] == [fast] and backend.calls == 0


class CoresBackend:
    """A backend whose runs share :class:`Cores`; ``spin_after``: how long it holds them after."""

    def __init__(self, cores: Cores, seconds: float, spin_after: float = 0.0) -> None:
        self.cores, self.seconds, self.spin_after = cores, seconds, spin_after

    def run(self, batch):  # noqa: ANN001, ANN201
        self.cores.work(self.seconds, spin_after=self.spin_after)
        return {}


def test_probe_does_not_charge_a_runtime_for_the_previous_ones_spinning_threads(onnx_path):
    """ONNX Runtime's workers spin on after its run (R50 INT8, 2 cores: the OpenVINO run right
    after took 9% longer); here the faster OpenVINO would have measured 75 ms against 30."""
    from retina_edge.runtime.core.model_file import read_deployment

    cores = Cores()
    assert SETTLE_SECONDS > 0.06  # the real spin was over within 50 ms
    backends = {"onnxruntime": CoresBackend(cores, 0.03, spin_after=0.06), "openvino": CoresBackend(cores, 0.015)}
    choice = backend_choice.probe(backends, read_deployment(onnx_path))
    assert choice.backend == "openvino" and choice.median_ms["openvino"] < 25, choice.median_ms


def test_cache_key_follows_the_file_and_settings(onnx_path, fresh_cache):
    from retina_edge.runtime.core.model_file import read_deployment

    metadata = read_deployment(onnx_path)
    loaded = []
    load = loader({"onnxruntime": 0.001, "openvino": 0.02}, loaded)
    choose_and_load(onnx_path, metadata, load, device=None, settings=SETTINGS)
    probes = lambda: sum(1 for name, _ in loaded if name == "openvino")  # noqa: E731 - the loser is loaded only to probe
    choose_and_load(onnx_path, metadata, load, device=None, settings={**SETTINGS, "threads": 2})
    assert probes() == 2  # another thread count is another measurement
    stat = onnx_path.stat()
    os.utime(onnx_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # rebuilt in place
    choose_and_load(onnx_path, metadata, load, device=None, settings=SETTINGS)
    assert probes() == 3


def test_damaged_or_unwritable_cache_costs_only_a_probe(onnx_path, fresh_cache, caplog, monkeypatch):
    from retina_edge.runtime.core.model_file import read_deployment

    fresh_cache.mkdir(parents=True)
    (fresh_cache / backend_choice.CACHE_NAME).write_text("{not json")
    loaded = []
    choice, _ = choose_and_load(onnx_path, read_deployment(onnx_path), loader({"onnxruntime": 0.001, "openvino": 0.02}, loaded),
                                device=None, settings=SETTINGS)
    assert choice.backend == "onnxruntime"
    assert json.loads((fresh_cache / backend_choice.CACHE_NAME).read_text())  # rewritten whole

    monkeypatch.setenv("RETINA_EDGE_CACHE", "/proc/retina-edge-cache")  # cannot be created
    choice, _ = choose_and_load(onnx_path, read_deployment(onnx_path), loader({"onnxruntime": 0.02, "openvino": 0.001}, loaded),
                                device=None, settings=SETTINGS)
    assert choice.backend == "openvino" and "cannot cache a measured choice" in caplog.text


def test_devices_and_single_installs_need_no_probe(monkeypatch):
    monkeypatch.setattr(backend_choice, "installed_cpu_backends", lambda: ("onnxruntime", "openvino"))
    assert backend_choice.fixed_choice("cuda").backend == "onnxruntime"
    assert backend_choice.fixed_choice("GPU").backend == "openvino"
    assert backend_choice.fixed_choice("cpu") is None and backend_choice.fixed_choice(None) is None
    monkeypatch.setattr(backend_choice, "installed_cpu_backends", lambda: ("openvino",))
    assert backend_choice.fixed_choice(None) == BackendChoice("openvino", "the only ONNX backend installed", {})


def test_detector_auto_measures_real_backends_and_explicit_wins(onnx_path, fresh_cache):
    image = np.random.default_rng(0).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    with Detector(onnx_path) as auto:
        assert auto.backend_choice.reason == "probe"
        assert set(auto.backend_choice.median_ms) == {"onnxruntime", "openvino"}
        assert auto.backend_name == auto.backend_choice.backend == auto.backend.name
        picked = auto.detect(image)[0]
    assert (cache_root() / backend_choice.CACHE_NAME).is_file()
    with Detector(onnx_path) as cached:
        assert cached.backend_choice.reason == "measured earlier on this machine"
        assert cached.backend_name == auto.backend_name
    other = {"onnxruntime": "openvino", "openvino": "onnxruntime"}[auto.backend_name]
    with Detector(onnx_path, backend=other) as explicit:
        assert explicit.backend_name == other and explicit.backend_choice is None
        np.testing.assert_allclose(explicit.detect(image)[0].boxes, picked.boxes, atol=0.05)
