"""README's step-by-step quick start, run literally: each command of the block, as written, in an
empty folder with the installed ``retina-edge`` on PATH, must exit 0 (a README flow once failed on
paths nothing created, and another on a graph its own search wrote)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def bash_block_after(marker: str) -> list[str]:
    """The commands of the first ```bash block after ``marker``, continuation lines joined, comments dropped."""
    text = README.read_text()
    block = re.search(r"```bash\n(.*?)```", text[text.index(marker):], flags=re.S).group(1)
    joined = re.sub(r"\\\n\s*", "", block)
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def readme_env(folder: Path) -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "RETINA_EDGE_CACHE": str(folder / "cache")}


def run_literally(command: str, folder: Path) -> None:
    run = subprocess.run(["bash", "-c", command], cwd=folder, env=readme_env(folder), capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, f"{command}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory) -> Path:
    """An empty folder after README's step-by-step quick start, run as written."""
    folder = tmp_path_factory.mktemp("readme")
    commands = bash_block_after("Or step by step:")
    assert [c.split()[1] for c in commands] == ["synth", "export", "build", "verify", "bench", "detect", "eval"]
    for command in commands:
        run_literally(command, folder)
    return folder


@pytest.mark.slow
def test_the_step_by_step_quick_start_runs_as_written(quick_start):
    assert (quick_start / "runs" / "verify-int8" / "report.md").is_file()
    assert (quick_start / "runs" / "detect" / "dets.json").is_file()


def ports_taken(ports: tuple[int, ...]) -> bool:
    for port in ports:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return True
    return False


@pytest.mark.slow
def test_the_triton_block_runs_as_written(quick_start):
    """README's Triton block after the quick start, on Triton's default ports: ``serve`` in the
    background (its one change: loopback for ``--host 0.0.0.0``, as tests listen on loopback only),
    ``detect --model triton://localhost:8001/...`` against it, then Ctrl-C ends ``serve`` with 130."""
    if shutil.which("tritonserver") is None and importlib.util.find_spec("pytriton") is None:
        pytest.skip("no tritonserver (pip install --no-deps nvidia-pytriton)")
    if ports_taken((8000, 8001, 8002)):
        pytest.skip("Triton's default ports 8000-8002 are in use here")
    triton, serve, detect = bash_block_after("**Triton Inference Server")
    assert serve.endswith("--host 0.0.0.0")
    run_literally(triton, quick_start)
    server = subprocess.Popen(["bash", "-c", "exec " + serve.replace("0.0.0.0", "127.0.0.1")], cwd=quick_start,
                              env=readme_env(quick_start), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while not ports_taken((8001,)):
            assert server.poll() is None and time.monotonic() < deadline, server.stdout.read()[-3000:]
            time.sleep(0.5)
        run_literally(detect, quick_start)
        assert json.loads((quick_start / "dets.json").read_text())
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=60)[0]
    assert server.returncode == 130, output[-3000:]


@pytest.mark.slow
def test_the_deepstream_command_runs_as_written(quick_start):
    """README's DeepStream command (in its prose); DeepStream itself is not run here."""
    text = README.read_text()
    command = re.search(r"`(retina-edge deepstream [^`]*)`", text.replace("\n", " ")).group(1)
    run_literally(re.sub(r"\s+", " ", command), quick_start)
    for name in ("config_infer_primary.txt", "deepstream_app_config.txt", "labels.txt", "config_inferserver_primary.txt"):
        assert (quick_start / "ds" / name).is_file(), name
