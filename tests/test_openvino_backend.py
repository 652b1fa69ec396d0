"""OpenVINO backend under concurrent callers and signals: a pool of reused infer requests, a
request's first run of an input shape never concurrent with another's (OpenVINO 2026.4 deadlocked
there), and the thread's own signal stack kept across compiles (2026.4 left a freed one)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from retina_edge.export.onnx_export import ExportOptions, export_onnx
from retina_edge.preprocess import PreprocessConfig
from retina_edge.runtime.backends.openvino_backend import OpenVinoBackend
from tiny import tiny_model


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ov")
    return export_onnx(tiny_model(), out / "m.onnx", ExportOptions(preprocess=PreprocessConfig(128, 160), tail="nms",
                                                                   batch=(1, 2, 2)))


class Output:
    def get_any_name(self) -> str:
        return "scores"

    def get_names(self) -> set[str]:
        return {"scores"}


class RecordingCompiled:
    """Stands in for a compiled model: its requests record how many first runs of a shape (and
    how many runs at all) overlap in time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.created = self.first_now = self.first_most = self.now = self.most = 0

    def create_infer_request(self):  # noqa: ANN201
        with self.lock:
            self.created += 1
        return RecordingRequest(self)


class RecordingRequest:
    def __init__(self, compiled: RecordingCompiled) -> None:
        self.compiled, self.shapes = compiled, set()

    def infer(self, inputs: dict) -> dict:
        compiled, shape = self.compiled, next(iter(inputs.values())).shape
        first = shape not in self.shapes
        with compiled.lock:
            compiled.now += 1
            compiled.most = max(compiled.most, compiled.now)
            if first:
                compiled.first_now += 1
                compiled.first_most = max(compiled.first_most, compiled.first_now)
        time.sleep(0.03)
        self.shapes.add(shape)
        with compiled.lock:
            compiled.now -= 1
            compiled.first_now -= first
        return {Output(): np.zeros(shape[:1], np.float32)}


def test_first_runs_of_a_shape_are_serial_and_requests_are_reused(onnx_path):
    backend = OpenVinoBackend(onnx_path, streams=2)
    backend.compiled = recorder = RecordingCompiled()
    batches = [np.zeros((1 + index // 12, 3, 128, 160), np.float32) for index in range(24)]  # a shape change half way
    with ThreadPoolExecutor(4) as pool:
        outputs = list(pool.map(backend.run, batches))
    assert [len(out["scores"]) for out in outputs] == [len(batch) for batch in batches]
    assert recorder.first_most == 1, "two requests specialised a shape at once"
    assert recorder.most >= 2, "runs of a known shape must still overlap"
    assert recorder.created <= 4, f"{recorder.created} requests for 4 callers: requests are not reused"


def test_concurrent_detects_on_real_openvino_finish(onnx_path):
    """The reproduction: before the pool and the serial first runs, about one process in three
    hung for good in here (2 streams, 2 threads, fresh detectors)."""
    script = textwrap.dedent(f"""
        import numpy as np
        from concurrent.futures import ThreadPoolExecutor
        from retina_edge.runtime import Detector
        from retina_edge.runtime.backends import BackendOptions
        image = np.random.default_rng(0).integers(0, 255, (100, 140, 3), dtype=np.uint8)
        expected = None
        for attempt in range(10):
            with Detector({str(onnx_path)!r}, backend="openvino", options=BackendOptions(streams=2)) as detector:
                with ThreadPoolExecutor(2) as pool:
                    results = list(pool.map(lambda _: detector.detect(image)[0], range(8)))
            expected = expected or results[0]
            assert all(np.allclose(r.boxes, expected.boxes) for r in results)
        print("finished")
    """)
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("concurrent OpenVINO inference hung")
    assert done.returncode == 0 and "finished" in done.stdout, done.stderr[-2000:]


def test_signals_still_work_after_compiled_models_are_released_out_of_order(onnx_path):
    """OpenVINO 2026.4 left the thread on a freed alternate signal stack here (two compiled models
    destroyed first-made first, as streams="auto" does), and the next Ctrl-C crashed the process."""
    script = textwrap.dedent(f"""
        import signal
        from retina_edge.runtime.backends.openvino_backend import OpenVinoBackend
        first, second = OpenVinoBackend({str(onnx_path)!r}), OpenVinoBackend({str(onnx_path)!r}, streams=2)
        first.close()
        second.close()
        signal.signal(signal.SIGINT, lambda *_: print("handled"))
        signal.raise_signal(signal.SIGINT)
        print("alive")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["handled", "alive"], (done.returncode, done.stderr[-2000:])


def test_only_the_backend_compiles_openvino_models():
    """Every OpenVINO compile goes through the backend, which keeps the thread's signal stack: a
    bench that called ``compile_model`` itself crashed the test process at a later SIGINT."""
    root = Path(__file__).resolve().parents[1]
    callers = [path.relative_to(root).as_posix() for folder in ("retina_edge", "runtime", "calib", "export", "bench")
               for path in sorted((root / folder).rglob("*.py")) if "compile_model(" in path.read_text()]
    assert callers == ["runtime/backends/openvino_backend.py"]
