"""TensorRT decisions and backend logic that run without TensorRT: DLA refusals, the legacy
calibration cache replayed by the matching calibrator, FP16 pinned buffers, and the backend's
handling of TensorRT's boolean results, version-compatible plans and CUDA-graph capture.

The backend tests drive a small hand-written fake of the calls the backend makes; it checks call
order and result handling, not TensorRT's API (that is the real-bindings tier's job)."""

from __future__ import annotations

import ctypes
import types

import numpy as np
import pytest

from retina_edge.config import ModelConfig
from retina_edge.contract import DeploymentMetadata, GraphTail
from retina_edge.errors import RetinaEdgeError
from retina_edge.export.trt_plan import check_dla, legacy_calibration_cache
from retina_edge.preprocess import PreprocessConfig
from retina_edge.runtime.tensorrt.cuda_memory import pinned_array
from retina_edge.runtime.tensorrt.engine_file import EngineFile


@pytest.mark.parametrize("version", ["10.8.0", "10.16.1.11", "11.0.0", "11.4.0"])
def test_dla_is_refused_where_tensorrt_has_none(version):
    with pytest.raises(RetinaEdgeError, match="has no DLA support"):
        check_dla(version, "int8", None)


@pytest.mark.parametrize("version", ["10.3.0", "10.7.0", "11.4.1", "11.5.0"])
def test_dla_needs_fp16_or_int8(version):
    with pytest.raises(RetinaEdgeError, match="DLA runs FP16 and INT8 only"):
        check_dla(version, "fp32", None)
    check_dla(version, "int8", None)
    check_dla(version, "fp32", "fp16")


def test_legacy_cache_keeps_its_algorithm_and_takes_the_reading_version():
    assert legacy_calibration_cache("TRT-100300-MinMaxCalibration\nx: 3c010a0e\n", "10.16.1.11") == (
        "MinMaxCalibration", "TRT-101601-MinMaxCalibration\nx: 3c010a0e\n")
    assert legacy_calibration_cache("TRT-100300-EntropyCalibration2\n", "10.3.0")[0] == "EntropyCalibration2"
    with pytest.raises(RetinaEdgeError, match="not a TensorRT calibration cache"):
        legacy_calibration_cache("garbage", "10.3.0")


def test_pinned_array_takes_float16():
    memory = ctypes.create_string_buffer(16)
    array = pinned_array(ctypes.addressof(memory), (2, 4), np.float16)
    array[:] = 1.5
    assert array.dtype == np.float16 and memory.raw[:2] == np.float16(1.5).tobytes()


class FakeContext:
    def __init__(self, log: list, refuse_shape: bool = False, fail_execute: bool = False) -> None:
        self.log, self.refuse_shape, self.fail_execute, self.shape = log, refuse_shape, fail_execute, None

    def set_input_shape(self, name, shape):  # noqa: ANN001, ANN201
        self.log.append(("set_input_shape", tuple(shape)))
        self.shape = tuple(shape)
        return not self.refuse_shape or shape[0] == 4  # the allocation at the profile maximum works

    def get_tensor_shape(self, name):  # noqa: ANN001, ANN201
        return self.shape if name == "images" else (self.shape[0], 5)

    def set_tensor_address(self, name, address):  # noqa: ANN001
        pass

    def execute_async_v3(self, stream):  # noqa: ANN001, ANN201
        self.log.append(("execute",))
        return not self.fail_execute


def fake_tensorrt(log: list, **context_options) -> types.SimpleNamespace:  # noqa: ANN003
    engine = types.SimpleNamespace(
        num_io_tensors=2, get_tensor_name=lambda i: ["images", "scores"][i],
        get_tensor_mode=lambda name: "in" if name == "images" else "out",
        get_tensor_dtype=lambda name: np.float32, get_tensor_shape=lambda name: (-1, 3, 32, 32),
        get_tensor_profile_shape=lambda name, profile: ((2, 3, 32, 32), (2, 3, 32, 32), (4, 3, 32, 32)),
        create_execution_context=lambda: FakeContext(log, **context_options))

    class Runtime:
        def __init__(self, logger) -> None:  # noqa: ANN001
            self.engine_host_code_allowed = False

        def deserialize_cuda_engine(self, plan):  # noqa: ANN001, ANN201
            log.append(("deserialize", self.engine_host_code_allowed))
            return engine

    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            self.level = level

    return types.SimpleNamespace(__version__="10.3.0", Logger=Logger, Runtime=Runtime,
                                 TensorIOMode=types.SimpleNamespace(OUTPUT="out"), nptype=lambda t: t)


class FakeBuffer:
    def __init__(self, shape, dtype) -> None:  # noqa: ANN001
        self.host, self.device = np.zeros(shape, dtype), 1

    def to_device(self, stream, nbytes=None) -> None:  # noqa: ANN001
        stream.log.append(("to_device",))

    def to_host(self, stream, nbytes=None) -> None:  # noqa: ANN001
        stream.log.append(("to_host",))

    def free(self) -> None:
        pass


class FakeStream:
    handle = 0

    def __init__(self, log: list) -> None:
        self.log = log

    def synchronize(self) -> None:
        self.log.append(("sync",))

    def capture(self, enqueue) -> None:  # noqa: ANN001
        self.log.append(("begin_capture",))
        enqueue()
        self.log.append(("end_capture",))

    def launch(self) -> None:
        self.log.append(("launch",))

    def close(self) -> None:
        pass


@pytest.fixture
def backend(monkeypatch):
    """A TensorRTBackend over the fakes; returns (make, log)."""
    import retina_edge.runtime.backends.tensorrt_backend as module

    log: list = []

    def make(version_compatible: bool = False, cuda_graph: bool = False, **context_options):  # noqa: ANN003, ANN202
        monkeypatch.setattr(module, "import_tensorrt", lambda: fake_tensorrt(log, **context_options))
        monkeypatch.setattr(module, "current_gpu", lambda: {"name": "Orin", "compute_capability": "8.7"})
        monkeypatch.setattr(module, "make_stream_and_allocator", lambda: (FakeStream(log), FakeBuffer))
        metadata = DeploymentMetadata(model=ModelConfig(), preprocess=PreprocessConfig(32, 32), tail=GraphTail("none"))
        engine = EngineFile({"metadata": metadata.to_props(), "tensorrt_version": "10.3.0", "device": {"name": "Orin"},
                             "build": {"version_compatible": version_compatible}}, b"plan", "m.engine")
        return module.TensorRTBackend(engine, use_cuda_graph=cuda_graph)

    return make, log


def test_version_compatible_plans_allow_host_code(backend):
    make, log = backend
    make(version_compatible=True)
    assert ("deserialize", True) in log
    log.clear()
    make()
    assert ("deserialize", False) in log


def test_refused_shape_and_failed_enqueue_are_errors_not_stale_outputs(backend):
    make, _ = backend
    with pytest.raises(RetinaEdgeError, match="refused the input shape"):
        make(refuse_shape=True).run(np.zeros((3, 3, 32, 32), np.float32))
    with pytest.raises(RetinaEdgeError, match="execute_async_v3 returned False"):
        make(fail_execute=True).run(np.zeros((2, 3, 32, 32), np.float32))
    with pytest.raises(RetinaEdgeError, match="outside the engine's profile range 2..4"):
        make().run(np.zeros((1, 3, 32, 32), np.float32))


def test_cuda_graph_is_captured_after_a_plain_enqueue_per_shape(backend):
    make, log = backend
    engine = make(cuda_graph=True)
    log.clear()
    engine.run(np.zeros((2, 3, 32, 32), np.float32))
    engine.run(np.zeros((2, 3, 32, 32), np.float32))
    steps = [entry[0] for entry in log]
    assert steps[:8] == ["set_input_shape", "to_device", "execute", "to_host", "sync", "begin_capture", "to_device", "execute"]
    assert steps.count("begin_capture") == 1 and steps.count("launch") == 2  # the same shape replays


def test_cuda_graph_is_only_for_engines(tmp_path):
    from retina_edge.runtime import Detector
    from retina_edge.runtime.backends import BackendOptions

    with pytest.raises(RetinaEdgeError, match="CUDA graphs .* are for TensorRT engines"):
        Detector(tmp_path / "m.onnx", options=BackendOptions(cuda_graph=True))
