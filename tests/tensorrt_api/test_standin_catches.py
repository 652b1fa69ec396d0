"""The stand-in is only worth its checks: each planted mistake below must fail it, as it would
fail on TensorRT or cuda-python, and the defects fixed in our engine path must show in its model."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from graphs import BATCH, INPUT, graph_path
from signatures import NotModelled

from retina_edge.errors import RetinaEdgeError
from retina_edge.export.tensorrt_build import build_engine
from retina_edge.export.trt_plan import TrtBuildSettings, trt_major_version
from retina_edge.runtime import Detector
from retina_edge.runtime.tensorrt.engine_file import read_engine_file, write_engine_file

SHAPE = (1, 3, *INPUT)


@pytest.fixture
def api(trt_env, graphs, tmp_path):  # noqa: ANN001, ANN201
    """Stand-in objects as our code makes them: builder, config, profile, engine, context."""
    trt = sys.modules["tensorrt"]
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    engine_path = build_engine(graph_path(graphs, "fp32", "decode"), tmp_path / "m.engine", TrtBuildSettings(batch=BATCH))
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(read_engine_file(engine_path).plan)
    return types.SimpleNamespace(trt=trt, env=trt_env, cudart=trt_env.cudart, builder=builder, runtime=runtime,
                                 config=builder.create_builder_config(), profile=builder.create_optimization_profile(),
                                 engine=engine, context=engine.create_execution_context(), engine_path=engine_path)


PLANTED = {
    "execute_async_v2 (TensorRT 8)": (AttributeError, lambda a: a.context.execute_async_v2([0, 0], 0)),
    "num_bindings (TensorRT 8)": (AttributeError, lambda a: a.engine.num_bindings),
    "a wrong keyword": (TypeError, lambda a: a.config.set_memory_pool_limit(a.trt.MemoryPoolType.WORKSPACE, size=1 << 20)),
    "a wrong enum type": (TypeError, lambda a: a.config.set_flag(a.trt.MemoryPoolType.WORKSPACE)),
    "an int for an enum": (TypeError, lambda a: a.config.set_flag(1)),
    "a float address": (TypeError, lambda a: a.context.set_tensor_address("images", 1.5)),
    "a missing argument": (TypeError, lambda a: a.profile.set_shape("images", SHAPE, SHAPE)),
    "a read-only property": (AttributeError, lambda a: setattr(a.engine, "num_io_tensors", 3)),
    "a property of the wrong type": (TypeError, lambda a: setattr(a.config, "builder_optimization_level", "3")),
    "a removed property (max_workspace_size)": (AttributeError, lambda a: setattr(a.config, "max_workspace_size", 1)),
    "a float size to cudaMalloc": (TypeError, lambda a: a.cudart.cudaMalloc(1.5)),
    "an int for cudaMemcpyKind": (TypeError, lambda a: a.cudart.cudaMemcpyAsync(0, 0, 4, 1, 0)),
    "cudaMalloc without a size": (TypeError, lambda a: a.cudart.cudaMalloc()),
}


@pytest.mark.parametrize("mistake", sorted(PLANTED))
def test_planted_mistake_fails(api, mistake):
    error, call = PLANTED[mistake]
    with pytest.raises(error):
        call(api)


def test_builder_flag_fp16_exists_only_before_11(api):
    if trt_major_version(api.trt.__version__) >= 11:
        with pytest.raises(AttributeError):
            api.config.set_flag(api.trt.BuilderFlag.FP16)
    else:
        api.config.set_flag(api.trt.BuilderFlag.FP16)
        assert api.config.get_flag(api.trt.BuilderFlag.FP16)


def test_unmodelled_api_is_reported_not_guessed(api):
    with pytest.raises(NotModelled):
        api.engine.get_tensor_location("images")
    with pytest.raises(NotModelled):
        api.cudart.cudaMemset(0, 0, 4)


def test_capture_right_after_a_shape_change_breaks_the_graph(api):
    """The defect fixed in the backend: trtexec enqueues once before capturing after a shape change."""
    cudart, context = api.cudart, api.context
    stream = cudart.cudaStreamCreate()[1]
    for name in (api.engine.get_tensor_name(i) for i in range(api.engine.num_io_tensors)):
        context.set_tensor_address(name, cudart.cudaMalloc(1 << 20)[1])
    assert context.set_input_shape("images", SHAPE)
    cudart.cudaStreamBeginCapture(stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal)
    assert not context.execute_async_v3(stream)
    assert cudart.cudaStreamEndCapture(stream)[0] == cudart.cudaError_t.cudaErrorStreamCaptureInvalidated
    assert context.execute_async_v3(stream), api.env.errors  # a plain enqueue does the setup
    assert cudart.cudaStreamSynchronize(stream)[0] == cudart.cudaError_t.cudaSuccess
    cudart.cudaStreamBeginCapture(stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal)
    assert context.execute_async_v3(stream)  # after a plain enqueue, the same shape captures
    assert cudart.cudaStreamEndCapture(stream)[0] == cudart.cudaError_t.cudaSuccess


def test_version_compatible_plan_needs_host_code_allowed(api, graphs, tmp_path):
    """The defect fixed in the backend: such plans were refused and the user told to rebuild."""
    path = build_engine(graph_path(graphs, "fp32", "none"), tmp_path / "vc.engine",
                        TrtBuildSettings(batch=BATCH, version_compatible=True))
    assert api.runtime.deserialize_cuda_engine(read_engine_file(path).plan) is None
    api.runtime.engine_host_code_allowed = True
    assert api.runtime.deserialize_cuda_engine(read_engine_file(path).plan) is not None
    engine = read_engine_file(path)  # a header that hides the mode: our runtime would not allow host code
    hidden = write_engine_file(tmp_path / "hidden.engine", engine.plan, metadata=engine.deployment,
                               tensorrt_version=engine.header["tensorrt_version"], device=engine.header["device"],
                               build={**engine.header["build"], "version_compatible": False})
    with pytest.raises(RetinaEdgeError, match="could not deserialize"):
        Detector(hidden)


def test_shapes_outside_the_profile_are_refused_not_stale(api):
    assert not api.context.set_input_shape("images", (BATCH[2] + 1, 3, *INPUT))
    assert not api.context.set_input_shape("images", (1, 3, INPUT[0] + 1, INPUT[1]))
    assert api.context.set_input_shape("images", SHAPE)
    assert tuple(api.context.get_tensor_shape("boxes"))[0] == 1


def test_short_device_buffers_are_caught(api):
    cudart, context = api.cudart, api.context
    stream = cudart.cudaStreamCreate()[1]
    context.set_input_shape("images", (2, 3, *INPUT))
    for name in (api.engine.get_tensor_name(i) for i in range(api.engine.num_io_tensors)):
        context.set_tensor_address(name, cudart.cudaMalloc(16)[1])
    with pytest.raises(AssertionError, match="not inside one device allocation"):
        context.execute_async_v3(stream)


def test_results_appear_only_after_synchronize(api):
    cudart = api.cudart
    stream = cudart.cudaStreamCreate()[1]
    host = cudart.cudaMallocHost(4)[1]
    device = cudart.cudaMalloc(4)[1]
    view = np.frombuffer((np.ctypeslib.as_array((__import__("ctypes").c_ubyte * 4).from_address(host))), np.uint8)
    view[:] = 7
    cudart.cudaMemcpyAsync(device, host, 4, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)
    view[:] = 0
    cudart.cudaMemcpyAsync(host, device, 4, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)
    assert view.tolist() == [0, 0, 0, 0]
    cudart.cudaStreamSynchronize(stream)
    assert view.tolist() == [0, 0, 0, 0]  # queued in order: the host wrote 0 before the first copy ran
