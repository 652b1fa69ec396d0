"""The TensorRT API tier: for each TensorRT release (JetPack 6's 10.3, the last 10.x, and 11.4),
the engine path is driven through the real Python bindings over stub native libraries
(``tests/tensorrt_api``), one process per release because the real module imports once.

The wheels come from PyPI once and stay in ``$RETINA_EDGE_TRT_CACHE``; the tier is skipped, with
the reason, only where there is no C compiler or no registry. The graphs are built once here and
shared by the three runs. What it proves: API use (names, signatures, enums, properties, results
checked) and data flow; not TensorRT's numbers (the stand-in computes with ONNX Runtime)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "tensorrt_api"
sys.path.insert(0, str(HERE))

from bindings import ENV_FOLDER, VERSIONS, Unavailable, prepare  # noqa: E402
from graphs import ENV_GRAPHS, make_graphs  # noqa: E402

pytestmark = pytest.mark.tensorrt_api


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> Path:  # noqa: ANN001
    return make_graphs(tmp_path_factory.mktemp("trt-graphs"))


@pytest.mark.parametrize("version", VERSIONS)
def test_engine_path_against_the_real_bindings(version, graphs):
    try:
        folder = prepare(version)
    except Unavailable as why:
        pytest.skip(str(why))
    env = {**os.environ, ENV_FOLDER: str(folder), ENV_GRAPHS: str(graphs)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning",
                           str(HERE)], env=env, capture_output=True, text=True, timeout=900, cwd=HERE.parent.parent)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-2000:]
    assert done.returncode == 0, f"TensorRT {version}: {summary}\n{done.stdout[-8000:]}"
    assert re.fullmatch(r"\d+ passed in .*", summary), f"TensorRT {version}: nothing may be skipped here: {summary}"
    print(f"TensorRT {version}: {summary}")
