"""Packaging promises: torch-free runtime import, one namespace, every CLI command with an example."""

from __future__ import annotations

import subprocess
import sys

import pytest

from retina_edge.cli.main import COMMAND_MODULES, build_parser, main


def test_runtime_imports_without_torch():
    code = "import retina_edge.runtime, retina_edge, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pyproject_lists_every_package():
    """Each folder with an ``__init__.py`` is a package the wheel must carry (see test_wheel_install)."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {Path(folder): name for name, folder in config["package-dir"].items()}
    on_disk = set()
    for folder, name in folders.items():
        for init in (root / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(root / folder)
            on_disk.add(".".join([name, *relative.parts]))
    assert on_disk == set(config["packages"])


def test_subpackages_live_under_one_namespace():
    import retina_edge.calib
    import retina_edge.export
    import retina_edge.runtime

    for module in (retina_edge.calib, retina_edge.export, retina_edge.runtime):
        assert module.__name__.startswith("retina_edge.")


@pytest.mark.parametrize("command", COMMAND_MODULES)
def test_every_command_help_shows_an_example(command, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([command, "--help"])
    assert info.value.code == 0
    assert f"example:\n  retina-edge {command}" in capsys.readouterr().out


def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys):
    assert main(["inspect", "--weights", str(tmp_path / "nope.pth")]) == 2
    err = capsys.readouterr().err
    assert "weights file not found" in err and "Traceback" not in err


def test_console_script_runs():
    result = subprocess.run(["retina-edge", "archs"], capture_output=True, text=True, check=True)
    assert "resnet50_fpn_v2" in result.stdout


def test_no_extra_brings_a_second_opencv():
    """trackers (the track extra, in dev) asked for opencv-python beside our opencv-python-headless: two
    packages writing one cv2. Every requirement reachable from the extras, through the installed
    packages' own metadata, must leave the headless OpenCV the only one."""
    import re
    import tomllib
    from importlib.metadata import PackageNotFoundError, distribution
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    pending = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    seen, opencv = set(), set()
    while pending:
        requirement = pending.pop()
        if ";" in requirement and "extra ==" in requirement:
            continue  # an optional extra of a dependency: not installed by ours
        name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")
        if name.startswith("opencv"):
            opencv.add(name)
        if name in seen or name == "retina-edge":
            continue
        seen.add(name)
        try:
            pending += distribution(name).requires or []
        except PackageNotFoundError:
            pass
    assert opencv == {"opencv-python-headless"}


def test_readme_says_what_build_does_with_an_engine_name_without_tensorrt(tmp_path, capsys):
    from pathlib import Path

    from retina_edge.export.tensorrt_build import tensorrt_available

    if tensorrt_available():
        pytest.skip("TensorRT is installed here")
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    assert "Without TensorRT, `-o model.engine` is refused before any work" in readme
    assert main(["build", "--weights", "preset:synth", "-o", str(tmp_path / "model.engine")]) == 2
    assert "write an ONNX model (-o model.onnx)" in capsys.readouterr().err and not list(tmp_path.iterdir())
