"""README's step-by-step quick start, run literally: each command of the block, as written, in an
empty folder with the installed ``retina-edge`` on PATH, must exit 0 (a README flow once failed on
paths nothing created, and another on a graph its own search wrote)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def bash_block_after(marker: str) -> list[str]:
    """The commands of the first ```bash block after ``marker``, continuation lines joined, comments dropped."""
    text = README.read_text()
    block = re.search(r"```bash\n(.*?)```", text[text.index(marker):], flags=re.S).group(1)
    joined = re.sub(r"\\\n\s*", "", block)
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.slow
def test_the_step_by_step_quick_start_runs_as_written(tmp_path):
    commands = bash_block_after("Or step by step:")
    assert [c.split()[1] for c in commands] == ["synth", "export", "build", "verify", "bench", "detect", "eval"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "RETINA_EDGE_CACHE": str(tmp_path / "cache")}
    for command in commands:
        run = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, f"{command}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    assert (tmp_path / "runs" / "verify-int8" / "report.md").is_file()
    assert (tmp_path / "runs" / "detect" / "dets.json").is_file()
