"""The built wheel, installed non-editable into a fresh venv with only ONNX Runtime (no torch):
every package and data file is in it, ``retina-edge detect`` runs an ONNX model exported
elsewhere, and README's runtime snippet works as written.

An editable install finds every folder on disk, so only this test sees what the wheel lacks.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
NETWORK_ERRORS = ("Could not find a version", "No matching distribution", "Failed to establish", "Network is unreachable",
                  "Temporary failure in name resolution", "ProxyError")


def _run(*command: str | os.PathLike, **kwargs) -> subprocess.CompletedProcess:  # noqa: ANN003
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a clean copy of the sources: setuptools reuses a checkout's build/ folder, where a
    module removed since an earlier build would still be picked up."""
    out = tmp_path_factory.mktemp("wheel")
    source = out / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                                                               ".pytest_cache", ".whl", ".gl", "runs"))
    result = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", out, source)
    assert result.returncode == 0, result.stderr[-2000:]
    (path,) = out.glob("retina_edge-*.whl")
    return path


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv (no system site-packages) with the wheel and onnxruntime only."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    assert _run(sys.executable, "-m", "venv", root).returncode == 0
    python = root / "bin" / "python"
    result = _run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel, "onnxruntime")
    if result.returncode and any(text in result.stderr for text in NETWORK_ERRORS):
        pytest.skip(f"no package registry reachable for the fresh venv: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """An ONNX model exported here (with torch) and a folder of two images, for the venv to use."""
    from retina_edge.export.onnx_export import ExportOptions, export_onnx
    from retina_edge.imageio import write_image_rgb
    from retina_edge.preprocess import PreprocessConfig
    from tiny import tiny_model

    out = tmp_path_factory.mktemp("exported")
    model = tiny_model(("cat", "dog"))
    export_onnx(model, out / "model.onnx", ExportOptions(preprocess=PreprocessConfig(128, 128)))
    rng = np.random.default_rng(0)
    for index in range(2):
        write_image_rgb(out / "images" / f"{index}.jpg", rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))
    return out / "model.onnx", out / "images"


def test_wheel_holds_every_package_and_the_preset(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    modules = {f"retina_edge/{p}" if Path(p).parts[0] in ("export", "runtime", "calib") else p  # pyproject's package-dir
               for p in tracked if Path(p).parts[0] in ("retina_edge", "export", "runtime", "calib")}
    if modules:  # outside a git checkout there is nothing to compare with
        assert {n for n in names if n.endswith(".py")} == modules
    for module in ("retina_edge/runtime/backends/onnxruntime_backend.py", "retina_edge/presets/__init__.py",
                   "retina_edge/presets/synth.pth", "retina_edge/calib/build.py", "retina_edge/export/onnx_export.py"):
        assert module in names, f"{module} is missing from {wheel.name}"


def test_runtime_only_venv_has_no_torch(venv):
    result = _run(venv / "bin" / "python", "-c", "import torch")
    assert result.returncode != 0 and "No module named 'torch'" in result.stderr


def test_detect_cli_runs_from_the_wheel(venv, exported, tmp_path):
    model, images = exported
    result = _run(venv / "bin" / "retina-edge", "detect", "--model", model, "--source", images,
                  "--save-json", tmp_path / "dets.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2 images" in result.stdout and (tmp_path / "dets.json").is_file()


def test_readme_runtime_snippet_runs_as_written(venv, exported, tmp_path):
    model, images = exported
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    (snippet,) = [b for b in blocks if b.startswith("# runtime only")]
    (tmp_path / "model.onnx").write_bytes(model.read_bytes())
    (tmp_path / "street.jpg").write_bytes((images / "0.jpg").read_bytes())
    result = _run(venv / "bin" / "python", "-c", snippet, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^(cat|dog) 0\.\d+ \(", result.stdout, flags=re.M), result.stdout


@pytest.mark.parametrize("command", [
    ["export", "--weights", "preset:synth", "-o", "m.onnx"],
    ["verify", "--model", "{model}", "--weights", "preset:synth", "--images", "{images}"],
    ["eval", "--weights", "{model}", "--data", "{images}/ann.json", "--images-dir", "{images}"],
])
def test_commands_that_need_more_say_what_to_install(venv, exported, tmp_path, command):
    model, images = exported
    (images / "ann.json").write_text('{"images": [], "annotations": [], "categories": []}')
    argv = [arg.format(model=model, images=images) for arg in command]
    result = _run(venv / "bin" / "retina-edge", *argv, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "install it with: pip install" in result.stderr
