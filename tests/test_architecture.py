"""The layers hold: import-linter's contracts (pyproject.toml) over the package as the wheel lays it out.

``export/``, ``runtime/`` and ``calib/`` are mapped into ``retina_edge`` by ``package-dir``, so
import-linter (which walks the package's folder) would not see them in the source tree: the test
lays the package out as the wheel does, in a temporary folder, and lints that.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def lay_out_package(dest: Path) -> Path:
    """Copy every package-dir folder to where the wheel puts it; returns the folder to put on sys.path."""
    for name, folder in sorted(PYPROJECT["tool"]["setuptools"]["package-dir"].items(), key=lambda kv: kv[0].count(".")):
        shutil.copytree(ROOT / folder, dest.joinpath(*name.split(".")), dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def run_lint_imports(dest: Path) -> subprocess.CompletedProcess:
    lint = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", lint, "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=dest,
                          env={"PYTHONPATH": str(dest), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)


def test_import_contracts_hold(tmp_path):
    result = run_lint_imports(lay_out_package(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def plant(dest: Path, module: str, line: str) -> None:
    """Append ``line`` to ``module`` (a path under ``runtime/``) in the laid-out package."""
    (dest / "retina_edge" / "runtime" / module).write_text((ROOT / "runtime" / module).read_text() + f"\n{line}  # planted\n")


def test_a_broken_contract_fails(tmp_path):
    """The check can fail: a runtime module that imports torch breaks the torch-free contract."""
    dest = lay_out_package(tmp_path)
    plant(dest, "core/nms.py", "import torch")
    result = run_lint_imports(dest)
    assert result.returncode != 0 and "The runtime is torch-free BROKEN" in result.stdout


WINGS = "Runtime wings: video and remote over core over backends over tensorrt"


@pytest.mark.parametrize(("module", "line"), [
    ("core/results.py", "import retina_edge.runtime.video.pipeline"),          # the core reaching up to the video wing
    ("backends/base.py", "import retina_edge.runtime.core.detector"),          # a backend reaching up to the core
    ("tensorrt/engine_file.py", "import retina_edge.runtime.backends.registry"),  # TensorRT support reaching up
])
def test_an_upward_import_inside_the_runtime_breaks_the_wings(tmp_path, module, line):
    dest = lay_out_package(tmp_path)
    plant(dest, module, line)
    result = run_lint_imports(dest)
    assert result.returncode != 0 and f"{WINGS} BROKEN" in result.stdout, result.stdout
    assert "The runtime is torch-free KEPT" in result.stdout


def test_a_wing_left_out_of_the_layers_breaks_the_wings(tmp_path):
    """``exhaustive``: a new subpackage of the runtime must be placed in a layer."""
    dest = lay_out_package(tmp_path)
    (dest / "retina_edge" / "runtime" / "extra").mkdir()
    (dest / "retina_edge" / "runtime" / "extra" / "__init__.py").write_text("")
    result = run_lint_imports(dest)
    assert result.returncode != 0 and f"{WINGS} BROKEN" in result.stdout, result.stdout


def test_root_holds_only_the_foundation():
    """At most 15 modules at the root of retina_edge, each one named in the foundation's contract."""
    modules = {f"retina_edge.{p.stem}" for p in (ROOT / "retina_edge").glob("*.py") if p.stem != "__init__"}
    assert len(modules) + 1 <= 15
    contracts = PYPROJECT["tool"]["importlinter"]["contracts"]
    foundation = next(c for c in contracts if c["name"].startswith("The foundation"))
    assert modules == set(foundation["source_modules"])


def import_cycles(dest: Path) -> list[list[str]]:
    """Groups of retina_edge modules that import each other round in a circle (function-level imports
    included), from the package laid out in ``dest``."""
    code = textwrap.dedent("""
        import grimp, json, sys
        graph = grimp.build_graph("retina_edge")
        edges = {m: sorted(i for i in graph.find_modules_directly_imported_by(m) if i.startswith("retina_edge"))
                 for m in graph.modules}
        index, low, stack, on_stack, groups = {}, {}, [], set(), []
        def visit(node):
            index[node] = low[node] = len(index)
            stack.append(node); on_stack.add(node)
            for nxt in edges.get(node, ()):
                if nxt not in index:
                    visit(nxt); low[node] = min(low[node], low[nxt])
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if low[node] == index[node]:
                group = []
                while True:
                    top = stack.pop(); on_stack.discard(top); group.append(top)
                    if top == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
        sys.setrecursionlimit(10000)
        for module in sorted(edges):
            if module not in index:
                visit(module)
        print(json.dumps(groups))
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=dest, env={"PYTHONPATH": str(dest), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_no_module_imports_itself_round_a_circle(tmp_path):
    """No import cycles anywhere in the package (model/archs <-> model/retinanet was the last)."""
    dest = lay_out_package(tmp_path)
    assert import_cycles(dest) == []
    plant_in = dest / "retina_edge" / "model" / "archs.py"
    plant_in.write_text(plant_in.read_text() + "\n\ndef _planted():\n    from retina_edge.model.retinanet import RetinaNet\n")
    assert import_cycles(dest) == [["retina_edge.model.archs", "retina_edge.model.retinanet"]]
