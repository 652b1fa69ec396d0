"""The TensorRT API tier's session: one TensorRT version per process (its real module can be
imported once), run by ``tests/test_tensorrt_api.py`` with ``RETINA_EDGE_TRT_BINDINGS`` set to a
prepared folder (:mod:`bindings`). Without it, nothing here is collected."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from bindings import ENV_FOLDER, load  # noqa: E402

if not os.environ.get(ENV_FOLDER):
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def real_trt():  # noqa: ANN201
    return load(Path(os.environ[ENV_FOLDER]))


@pytest.fixture(scope="session")
def real_cudart():  # noqa: ANN201
    from cuda.bindings import runtime

    return runtime


@pytest.fixture
def trt_env(real_trt, real_cudart, monkeypatch):  # noqa: ANN001, ANN201
    """A fresh simulated device; ``tensorrt`` and cuda-python's runtime replaced by the stand-ins."""
    import retina_edge.runtime.tensorrt.cuda_memory as cuda_memory
    from cuda_standin import CudaModel, make_cudart
    from standin_model import Environment
    from standin_runtime import make_tensorrt

    env = Environment(real_trt, CudaModel(real_cudart))
    env.cudart = make_cudart(real_cudart, env.cuda)
    monkeypatch.setitem(sys.modules, "tensorrt", make_tensorrt(env))
    monkeypatch.setattr(cuda_memory, "_cudart", lambda: env.cudart)
    return env


@pytest.fixture(scope="session")
def graphs(tmp_path_factory) -> Path:  # noqa: ANN001
    from graphs import graphs_folder

    return graphs_folder(tmp_path_factory.mktemp("graphs"))
