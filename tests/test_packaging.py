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
