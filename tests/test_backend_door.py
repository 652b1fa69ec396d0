"""The backend door: a backend defined here, in tests/, registered without touching the library,
runs through ``Detector``, ``retina-edge bench`` and ``retina-edge detect``; and one installed as a
plugin (a ``retina_edge.plugins`` entry point) registers itself.

The toy backend executes the ONNX graph with ``onnx.reference.ReferenceEvaluator`` (plain NumPy,
an implementation independent of ONNX Runtime), so its detections are checked against ONNX Runtime's.
"""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest

from retina_edge.cli.main import main
from retina_edge.contract import INPUT_NAME
from retina_edge.errors import RetinaEdgeError
from retina_edge.export.onnx_export import ExportOptions, export_onnx
from retina_edge.imageio import write_image_rgb
from retina_edge.preprocess import PreprocessConfig
from retina_edge.runtime import Detector
from retina_edge.runtime.backends import Backend, BackendOptions, backend_names, register_backend, unregister_backend
from retina_edge import registry as plugins
from retina_edge.runtime.backends import registry
from tiny import tiny_model

NAME = "numpy-reference"


class NumpyReferenceBackend:
    """Runs the graph in NumPy (the ONNX reference evaluator); single-threaded, CPU only."""

    name = NAME
    input_name = INPUT_NAME

    def __init__(self, path, options: BackendOptions) -> None:  # noqa: ANN001
        from onnx.reference import ReferenceEvaluator

        if options.device not in (None, "cpu"):
            raise RetinaEdgeError(f"{NAME} runs on the cpu only, not {options.device}", option="device")
        self.evaluator = ReferenceEvaluator(str(path))
        self.output_names = tuple(self.evaluator.output_names)
        self.runs = 0

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.runs += 1
        return dict(zip(self.output_names, self.evaluator.run(None, {self.input_name: batch})))

    def close(self) -> None:
        self.evaluator = None


@pytest.fixture
def numpy_backend():
    register_backend(NAME, factory=lambda path, options, engine: NumpyReferenceBackend(path, options), module="onnx",
                     devices=("cpu",), description="the ONNX reference evaluator (NumPy)")
    yield NAME
    unregister_backend(NAME)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    out = tmp_path_factory.mktemp("door")
    # The raw tail: the reference evaluator's GatherElements cannot take the NMS tail's index sizes.
    path = export_onnx(tiny_model(), out / "m.onnx", ExportOptions(preprocess=PreprocessConfig(128, 160), tail="none"))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (100, 120, 3), dtype=np.uint8) for _ in range(2)]
    (out / "images").mkdir()
    for index, image in enumerate(images):
        write_image_rgb(out / "images" / f"{index}.png", image)
    return path, images


def test_a_registered_backend_satisfies_the_protocol_and_runs_detector(numpy_backend, assets):
    path, images = assets
    assert NAME in backend_names()
    with Detector(path, backend=NAME) as toy, Detector(path, backend="onnxruntime") as ort:
        assert isinstance(toy.backend, Backend) and toy.backend_name == NAME and toy.backend_choice is None
        for got, want in zip(toy.detect(images), ort.detect(images)):
            assert len(got) == len(want) > 0
            np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-2)
            np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)
    with pytest.raises(RetinaEdgeError, match="cpu only"):
        Detector(path, backend=NAME, options=BackendOptions(device="GPU"))


def test_bench_and_detect_commands_run_through_it(numpy_backend, assets, tmp_path, capsys):
    path, _ = assets
    assert main(["bench", "--model", str(path), "--backend", NAME, "--iters", "1", "--warmup", "0"]) == 0
    assert f"m [{NAME}]" in capsys.readouterr().out
    for backend in (NAME, "onnxruntime"):
        assert main(["detect", "--model", str(path), "--backend", backend, "--source", str(path.parent / "images"),
                     "--save-json", str(tmp_path / f"{backend}.json")]) == 0
    toy, ort = (json.loads((tmp_path / f"{name}.json").read_text()) for name in (NAME, "onnxruntime"))
    assert len(toy) == len(ort) > 0
    assert [(r["file_name"], r["category_id"]) for r in toy] == [(r["file_name"], r["category_id"]) for r in ort]
    np.testing.assert_allclose([r["bbox"] for r in toy], [r["bbox"] for r in ort], atol=0.05)


def test_cli_choices_and_help_read_the_registry(numpy_backend, capsys):
    assert main(["detect", "--help"]) == 0
    assert NAME in capsys.readouterr().out
    unregister_backend(NAME)
    assert main(["detect", "--model", "m.onnx", "--source", "x", "--backend", NAME]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_a_backend_refuses_files_of_another_kind_and_names_collide(numpy_backend, assets):
    path, _ = assets
    with pytest.raises(RetinaEdgeError, match="only the tensorrt backend") as error:
        Detector(path.with_suffix(".engine"), backend=NAME)
    assert error.value.options == ("backend",)
    with pytest.raises(RetinaEdgeError, match="already registered"):
        register_backend(NAME, factory=lambda path, options, engine: None)


def test_an_installed_plugin_registers_through_its_entry_point(tmp_path, monkeypatch):
    """A distribution on sys.path whose entry_points.txt names a ``retina_edge.plugins`` function."""
    (tmp_path / "toy_plugin.py").write_text(textwrap.dedent(f"""
        from retina_edge.runtime.backends import register_backend

        def register():
            register_backend("toy-plugin", factory=lambda path, options, engine: None, module="toy_plugin",
                             install_hint="pip install toy-plugin")
    """))
    info = tmp_path / "toy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{plugins.ENTRY_POINT_GROUP}]\ntoy = toy_plugin:register\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        plugins.load_plugins()
        assert "toy-plugin" in backend_names()
        assert registry.backend_install_hint("toy_plugin.engine") == "pip install toy-plugin"
    finally:
        unregister_backend("toy-plugin")
        sys.modules.pop("toy_plugin", None)
