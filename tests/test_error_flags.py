"""Library errors speak the library's terms (no CLI flag in the message, the parameter named in
``option``); the CLI adds the flag the user typed. And no library message names a flag at all
(one used to name ``--legacy-int8``, which never existed)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from retina_edge.calib.build import BuildOptions, CalibrationOptions
from retina_edge.calib.search import SearchOptions
from retina_edge.cli.main import main
from retina_edge.contract import check_batch_range
from retina_edge.errors import RetinaEdgeError
from retina_edge.export.trt_plan import TrtBuildSettings, plan_precision

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = [ROOT / "retina_edge", ROOT / "export", ROOT / "runtime", ROOT / "calib"]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")


@pytest.mark.parametrize("make,options", [
    (lambda: BuildOptions(precision="int8", target="cpu").recipe(), ("calibration",)),
    (lambda: CalibrationOptions("x", count=0), ("count", "batch_size")),
    (lambda: SearchOptions(max_ap_drop=-1, val="v"), ("max_ap_drop",)),
    (lambda: check_batch_range((2, 1, 4)), ("batch",)),
    (lambda: plan_precision(10, "int8", TrtBuildSettings(legacy_precision="int8")), ("legacy_precision",)),
    (lambda: plan_precision(10, "fp32", TrtBuildSettings(legacy_precision="int8")), ("calibration_cache",)),
])
def test_the_python_api_names_parameters_not_flags(make, options):
    with pytest.raises(RetinaEdgeError) as error:
        make()
    assert "--" not in str(error.value) and error.value.options == options


@pytest.mark.parametrize("argv,flag", [
    (["build", "--int8", "--weights", "w.pth", "-o", "q.onnx"], "(see --calib)"),
    (["build", "--int8", "--weights", "w.pth", "--calib", "c", "--calib-count", "4", "--max-ap-drop", "-1", "--val", "v",
      "-o", "q.onnx"], "(see --max-ap-drop)"),
    (["export", "--weights", "w.pth", "--batch", "2", "1", "4", "-o", "x.onnx"], "(see --batch)"),
])
def test_the_cli_adds_its_flag(argv, flag, tmp_path, capsys, monkeypatch):
    from tiny import tiny_model

    from retina_edge.model.checkpoints import save_checkpoint

    save_checkpoint(tmp_path / "w.pth", tiny_model())
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert line.endswith(flag), line


def test_no_library_message_names_a_flag():
    """String constants in library code (docstrings aside) name no ``--flag``; the CLI's own modules may."""
    found = []
    for folder in LIBRARY:
        for path in folder.rglob("*.py"):
            if "cli" in path.relative_to(ROOT).parts or path.name in SUBPROCESS_FLAGS:
                continue
            tree = ast.parse(path.read_text())
            docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                          if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                          and node.body and isinstance(node.body[0], ast.Expr)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                    if FLAG.search(node.value) and not node.value.startswith(("pip ", "use NVIDIA")):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:60]}")
    assert not found, "\n".join(found)


#: Modules whose flags are another program's command line, not ours: tritonserver's, and ROS 2's
#: (``--ros-args -p model:=...``, which the ROS 2 node's user types).
SUBPROCESS_FLAGS = ("server.py", "ros2_node.py")
