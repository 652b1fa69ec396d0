"""Issue 43, part A: `detect`'s outputs lose nothing and damage nothing, one dead camera stops
nothing, secrets stay out of files, and flags that cannot apply are refused before work.

Frames of several sizes all reach the MP4 (letterboxed, counted); outputs that would land on one
path are refused in every command; a full disk ends the run with one line naming the file, complete
JSON lines and no unplayable video in place of an earlier one; ``kill -9`` leaves every earlier
output as it was; a live source that is down at the start is retried under the reconnect policy
while the others run (exit 1 if it never came) and its password appears in no output or message."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mjpeg import free_port
from outputs import frame_count, lines, written_lines
from retina_edge.cli.main import main
from retina_edge.data.synth_video import SyntheticVideo, write_video
from retina_edge.imageio import write_image_rgb

CLI = [sys.executable, "-m", "retina_edge.cli.main"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    import torch

    from retina_edge.export.onnx_export import ExportOptions, export_onnx
    from retina_edge.model.retinanet import build_model
    from retina_edge.preprocess import PreprocessConfig

    root = tmp_path_factory.mktemp("stream-faults")
    torch.manual_seed(0)
    model = build_model("resnet18_fpn", num_classes=3, backbone_width=16, fpn_channels=32, head_convs=1,
                        min_size=128, max_size=128).eval()
    export_onnx(model, root / "m.onnx", ExportOptions(preprocess=PreprocessConfig(128, 128)))
    write_video(root / "a.mp4", SyntheticVideo(seed=1), 12)
    video = SyntheticVideo(seed=2)
    for index, (height, width) in enumerate([(120, 160), (96, 128), (160, 120), (120, 160)]):
        write_image_rgb(root / "sizes" / f"{index}.png", video.frame(index)[:height, :width])
    (root / "cams.jpg").write_bytes(SyntheticVideo(seed=3).frame(0).tobytes()[:4096])  # a binary file by mistake
    (root / "many.txt").write_text("".join(f"{root / 'a.mp4'}\n" for _ in range(300)))
    return root


def snapshot(root: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def detect(*argv: str) -> list[str]:
    """``detect`` on the module's model, its choices fixed (nothing measured or said about them)."""
    return ["detect", "--model", "{root}/m.onnx", "--backend", "onnxruntime", "--streams", "1", *argv]


def run_detect(root: Path, *argv: str) -> int:
    return main([arg.format(root=root) for arg in detect(*argv)])


# The fault table's rows for these items: each is one line, exit 2, before any work, nothing written.
CASES = {
    "--jsonl and --json on one file": (detect("--source", "{root}/a.mp4", "--jsonl", "{root}/o.txt", "--json",
                                              "{root}/o.txt"), "are one path"),
    "--jsonl and --record on one file": (detect("--source", "{root}/a.mp4", "--jsonl", "{root}/o.mcap", "--record",
                                                "{root}/o.mcap"), "are one path"),
    "--save and --jsonl on one file": (detect("--source", "{root}/a.mp4", "--save", "{root}/o.mp4", "--jsonl",
                                              "{root}/o.mp4"), "are one path"),
    "--record and --json on one file": (detect("--source", "{root}/a.mp4", "--record", "{root}/o.mcap", "--json",
                                               "{root}/o.mcap"), "are one path"),
    "--json on a per-source video's name": (detect("--source", "{root}/a.mp4", "--source", "{root}/sizes", "--save",
                                                   "{root}/v.mp4", "--json", "{root}/v-0-a.mp4"),
                                            "and --save (video of source 0) {root}/v-0-a.mp4 are one path"),
    "a file output where another writes into a folder": (detect("--source", "{root}/a.mp4", "--json", "{root}/vids",
                                                                "--save", "{root}/vids/x.mp4"),
                                                         "is a file, and --save {root}/vids/x.mp4 would be inside it"),
    "--save-dir and --save-json on one path": (detect("--source", "{root}/sizes", "--save-dir", "{root}/out",
                                                      "--save-json", "{root}/out"), "are one path"),
    "verify --junit and --json on one file": (["verify", "--model", "{root}/m.onnx", "--weights", "preset:synth",
                                               "--images", "{root}/sizes", "--junit", "{root}/r.xml", "--json",
                                               "{root}/r.xml"], "are one path"),
    "eval --save-json and --metrics-json on one file": (["eval", "--weights", "{root}/m.onnx", "--data", "{root}/nope",
                                                         "--save-json", "{root}/e.json", "--metrics-json",
                                                         "{root}/e.json"], "are one path"),
    "build --timing-cache on -o": (["build", "--weights", "preset:synth", "-o", "{root}/q.onnx", "--timing-cache",
                                    "{root}/q.onnx"], "are one path"),
    "--track-reid without --track": (detect("--source", "{root}/a.mp4", "--track-reid", "0.5"), "add --track"),
    "--tracker without --track": (detect("--source", "{root}/a.mp4", "--tracker", "bytetrack"), "add --track"),
    "--fixed-camera without --track": (detect("--source", "{root}/a.mp4", "--fixed-camera"),
                                       "--fixed-camera sets how --track tracks"),
    "--max-batch-wait-ms 1e9": (detect("--source", "{root}/a.mp4", "--max-batch-wait-ms", "1e9"), "at most 1000"),
    "--sources a binary file": (detect("--sources", "{root}/cams.jpg"), "is not a text file"),
    "--sources /dev/zero": (detect("--sources", "/dev/zero"), "is over 1 MiB"),
    "--sources of 300 sources": (detect("--sources", "{root}/many.txt"), "300 sources; one run takes at most 256"),
    "--track on an image folder with --save-dir": (detect("--source", "{root}/sizes", "--track", "--save-dir",
                                                          "{root}/out"), "--track run {root}/sizes as a stream"),
    "--foxglove on a missing folder with --save-dir": (detect("--source", "{root}/nope", "--foxglove", "0",
                                                              "--save-dir", "{root}/out"), "source not found: {root}/nope"),
    "--foxglove-host that is no host name": (detect("--source", "{root}/a.mp4", "--foxglove", "0", "--foxglove-host",
                                                    "no such host!"), "the Foxglove live view cannot listen on"),
    "--foxglove-host of another machine": (detect("--source", "{root}/a.mp4", "--foxglove", "0", "--foxglove-host",
                                                  "192.0.2.1"), "cannot listen on 192.0.2.1:0: Cannot assign"),
}


@contextlib.contextmanager
def bounded_memory(extra: int = 1 << 30):  # noqa: ANN201
    """This process's address space capped at what it holds now plus ``extra``: a read without
    limit (of /dev/zero) ends in a MemoryError here, not in the kernel's OOM killer on a shared machine."""
    import resource

    held = int(next(line for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith("VmSize:")).split()[1]) * 1024
    previous = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (held + extra, previous[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, previous)


@pytest.mark.parametrize("name", sorted(CASES))
def test_mistake_is_one_line_exit_2_before_work(root, name, capsys, monkeypatch):
    from retina_edge.runtime import Detector

    monkeypatch.setattr(Detector, "__init__", lambda *a, **k: pytest.fail("the model was loaded"))
    argv, expected = CASES[name]
    before = snapshot(root)
    with bounded_memory() if "/dev/zero" in argv else contextlib.nullcontext():
        assert main([arg.format(root=root) for arg in argv]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and expected.format(root=root) in errors[0], err
    assert "Traceback" not in err and snapshot(root) == before


def test_foxglove_port_taken_is_one_line_before_work(root, capsys, monkeypatch):
    from retina_edge.runtime import Detector

    monkeypatch.setattr(Detector, "__init__", lambda *a, **k: pytest.fail("the model was loaded"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["detect", "--model", str(root / "m.onnx"), "--source", str(root / "a.mp4"), "--foxglove",
                     str(port)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}: Address already in use" in err, err


def test_source_list_comments_and_limits(tmp_path):
    import argparse

    from retina_edge.cli.stream import source_specs

    listing = tmp_path / "cams.txt"
    listing.write_text("# cameras\nfront.mp4   # the front door\n\nrtsp://cam/s#1\n  # indented comment\n")
    assert source_specs(argparse.Namespace(source=["x.mp4"], sources=str(listing))) == [
        "x.mp4", "front.mp4", "rtsp://cam/s#1"]  # a '#' inside a name (no space before it) stays


def test_frames_of_every_size_reach_the_video_of_their_source(root, tmp_path, capsys):
    """Before: an image folder of varying sizes gave an MP4 of 1 frame (OpenCV drops frames of
    another size), exit 0. Now every frame is there, letterboxed, and the run says so."""
    assert run_detect(root, "--source", str(root / "sizes"), "--source", str(root / "a.mp4"), "--save",
                       str(tmp_path / "v"), "--jsonl", str(tmp_path / "d.jsonl")) == 0
    out = capsys.readouterr().out
    assert frame_count(tmp_path / "v" / "0-sizes.mp4") == 4 and frame_count(tmp_path / "v" / "1-a.mp4") == 12
    assert "0-sizes.mp4: 4 frames (2 of another size letterboxed into 160x120)" in out, out
    assert [r["file"] for r in lines(tmp_path / "d.jsonl") if r["source"] == 0] == ["0.png", "1.png", "2.png", "3.png"]


def test_mp4_writer_letterboxes_other_sizes_centred(tmp_path):
    from retina_edge.runtime.video.video_writer import Mp4Writer

    with Mp4Writer(tmp_path / "v.mp4", 10) as writer:
        writer.write(np.full((64, 96, 3), 200, np.uint8))
        writer.write(np.full((96, 96, 3), 200, np.uint8))  # taller: fitted to 64 high, bars left and right
    assert (writer.frames, writer.letterboxed, writer.size) == (2, 1, (96, 64))
    import cv2

    capture = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    frames = [capture.read()[1] for _ in range(2)]
    second = frames[1].mean(axis=(0, 2))
    assert second[:12].max() < 30 and second[-12:].max() < 30 and second[40:56].min() > 170  # centred on black


class DroppingWriter:
    """cv2.VideoWriter that loses every frame after the first (what a full disk does to FFmpeg's)."""

    def __init__(self, real) -> None:  # noqa: ANN001
        self._real, self._written = real, 0

    def isOpened(self) -> bool:  # noqa: N802
        return self._real.isOpened()

    def write(self, image) -> None:  # noqa: ANN001
        self._written += 1
        if self._written == 1:
            self._real.write(image)

    def release(self) -> None:
        self._real.release()


def test_a_video_that_cannot_be_finished_raises_and_keeps_the_earlier_one(tmp_path, monkeypatch):
    import cv2

    from retina_edge.runtime.video.video_writer import Mp4Writer

    target = tmp_path / "v.mp4"
    target.write_bytes(b"the earlier video")
    real = cv2.VideoWriter
    monkeypatch.setattr(cv2, "VideoWriter", lambda *args: DroppingWriter(real(*args)))
    writer = Mp4Writer(target, 10)
    for _ in range(3):
        writer.write(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(OSError, match="held 1 of the 3 frames") as raised:
        writer.close()
    assert raised.value.filename == str(target) and target.read_bytes() == b"the earlier video"
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_little_free_space_stops_the_video_playable(tmp_path, monkeypatch):
    """FFmpeg only warns, per frame, on a full disk and leaves a file without its index: writing
    stops while the index still fits, and what was written is a playable video."""
    from retina_edge.runtime.video import video_writer

    free = {"bytes": 64 * 2**20}
    real = os.statvfs

    def statvfs(path):  # noqa: ANN001, ANN202
        stat = real(path)
        return os.statvfs_result((stat.f_bsize, 1, *stat[2:4], free["bytes"], *stat[5:]))

    monkeypatch.setattr(video_writer.os, "statvfs", statvfs)
    writer = video_writer.Mp4Writer(tmp_path / "v.mp4", 10)
    writer.write(np.zeros((32, 32, 3), np.uint8))
    free["bytes"] = 2**20
    with pytest.raises(OSError) as raised:
        writer.write(np.zeros((32, 32, 3), np.uint8))
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(tmp_path / "v.mp4")
    writer.close()
    assert frame_count(tmp_path / "v.mp4") == 2


def limited(max_bytes: int):  # noqa: ANN201
    """A child's file-size limit (writes past it fail with EFBIG instead of killing it): a full disk
    for one process, without root."""
    import resource

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return apply


def test_a_video_over_a_file_size_limit_is_one_line_and_keeps_the_earlier_one(root, tmp_path):
    """The real FFmpeg writer past the limit: before, exit 0 and a video without its index."""
    target = tmp_path / "out.mp4"
    target.write_bytes(b"the earlier video")
    run = subprocess.run([*CLI, *(a.format(root=root) for a in detect("--source", "{root}/a.mp4", "--save", str(target)))],
                         preexec_fn=limited(40_000),
                         capture_output=True, text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and f"could not write the video" in run.stderr and str(target) in run.stderr
    assert target.read_bytes() == b"the earlier video" and [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


class FullDisk:
    """The ``os`` module for one writer, whose disk takes ``room`` more bytes (a write crossing it is
    partial), then ``ENOSPC``."""

    def __init__(self, room: int) -> None:
        self.room = room

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(os, name)

    def write(self, fd: int, data) -> int:  # noqa: ANN001
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        taken = min(len(data), self.room)
        self.room -= taken
        return os.write(fd, data[:taken])


def test_full_disk_under_jsonl_is_one_line_and_keeps_complete_lines(root, tmp_path, monkeypatch, capsys):
    """Before: exit 0 and a last line cut mid-string."""
    from retina_edge.runtime.video import sinks

    monkeypatch.setattr(sinks, "os", FullDisk(1500))
    out = tmp_path / "d.jsonl"
    assert run_detect(root, "--source", str(root / "a.mp4"), "--jsonl", str(out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: No space left on device: {out}" in err, err
    records = lines(out)  # every line whole
    assert 0 < len(records) < 12 and [r["frame"] for r in records] == list(range(len(records)))


def test_full_disk_under_a_recording_is_one_line_and_keeps_the_earlier_one(root, tmp_path, monkeypatch, capsys):
    """Before: two error lines (the sink logged the failure the CLI then reported)."""
    import mcap.writer

    calls = []

    def full(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        calls.append(1)
        if len(calls) > 6:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mcap.writer.Writer, "add_message", full)
    monkeypatch.setattr(mcap.writer.Writer, "finish", lambda self: full(self))
    out = tmp_path / "run.mcap"
    out.write_bytes(b"the earlier recording")
    assert run_detect(root, "--source", str(root / "a.mp4"), "--record", str(out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: No space left on device: {out}" in err, err
    assert out.read_bytes() == b"the earlier recording" and [p.name for p in tmp_path.iterdir()] == ["run.mcap"]


def test_kill_9_mid_run_leaves_every_earlier_output_as_it_was(root, tmp_path):
    """README: an earlier good output is never damaged. Before: the MP4 and JSONL were written in place."""
    from test_multi_camera import read_mcap_detections

    outputs = {"save": tmp_path / "v.mp4", "jsonl": tmp_path / "d.jsonl", "json": tmp_path / "s.json",
               "record": tmp_path / "r.mcap"}
    flags = [arg for flag, path in outputs.items() for arg in (f"--{flag}", str(path))]
    assert run_detect(root, "--source", str(root / "a.mp4"), *flags) == 0  # the earlier good run
    earlier = {name: path.read_bytes() for name, path in outputs.items()}
    long_video = write_video(tmp_path / "in" / "long.mp4", SyntheticVideo(seed=5), 300)
    child = subprocess.Popen([*CLI, *(a.format(root=root) for a in detect()), "--source", str(long_video), *flags],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while written_lines(tmp_path, "d.jsonl") < 5 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
        child.kill()  # SIGKILL: no handler, no cleanup
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL and written_lines(tmp_path, "d.jsonl") >= 5
    assert {name: path.read_bytes() for name, path in outputs.items()} == earlier
    assert frame_count(outputs["save"]) == 12 and len(lines(outputs["jsonl"])) == 12
    assert json.loads(outputs["json"].read_text())["total"]["frames"] == 12
    assert len(read_mcap_detections(outputs["record"])["/camera_0/detections"]) == 12


def test_a_camera_down_at_the_start_stops_nothing_and_its_password_shows_nowhere(root, tmp_path, monkeypatch, capfd):
    """One source refuses connections, one accepts and stays silent; the file is processed whole, the
    two are retried under --reconnect-attempts and reported, exit 1. Before: exit 2 at once, nothing
    processed, and the password in the video names, the JSON outputs, the recording and the log."""
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rw_timeout;1000000")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    threading.Thread(target=lambda: [silent.accept() for _ in range(8)], daemon=True).start()
    refused = f"http://admin:s3cret-pw@127.0.0.1:{free_port()}/live"
    quiet = f"http://admin:s3cret-pw@127.0.0.1:{silent.getsockname()[1]}/live"
    try:
        code = run_detect(root, "--source", str(root / "a.mp4"), "--source", refused, "--source", quiet,
                           "--reconnect-attempts", "1", "--save", str(tmp_path / "v"), "--jsonl", str(tmp_path / "d.jsonl"),
                           "--json", str(tmp_path / "s.json"), "--record", str(tmp_path / "r.mcap"),
                           "--foxglove", "0", "--foxglove-host", "0.0.0.0")
    finally:
        silent.close()
    out, err = capfd.readouterr()
    assert code == 1, err
    assert sorted(r["frame"] for r in lines(tmp_path / "d.jsonl") if r["source"] == 0) == list(range(12))
    assert frame_count(tmp_path / "v" / "0-a.mp4") == 12
    stats = json.loads((tmp_path / "s.json").read_text())["sources"]
    assert [s["status"] for s in stats] == ["ok", "unreachable", "unreachable"]
    assert stats[1]["spec"] == refused.replace("admin:s3cret-pw", "***")
    assert "error: gave up on http://***@127.0.0.1" in err and "(unreachable)" in err
    # where the live view listens (the port the system gave), and that it is open to the network
    assert "Foxglove live view: ws://0.0.0.0:" in out and "ws://0.0.0.0:0\n" not in out
    assert "anyone who reaches this machine can watch" in err
    for path in tmp_path.rglob("*"):
        assert "s3cret" not in str(path) and (path.is_dir() or b"s3cret" not in path.read_bytes()), path
    assert "s3cret" not in out + err


def test_a_live_source_opens_under_the_reconnect_policy():
    """Its first open is retried like a reopening; stats say how it ended."""
    from retina_edge.errors import DataError
    from retina_edge.runtime.video.sources import CaptureOptions, ReconnectPolicy, capture_frames
    from retina_edge.runtime.video.stats import PipelineStats

    class LateCamera:
        live, spec, pending = True, "cam", True

        def __init__(self, fails: int) -> None:
            self.fails, self.frames = fails, 3

        def open(self) -> None:
            if self.fails or self.frames < 0:  # down at first, and gone once its frames ran out
                self.fails = max(0, self.fails - 1)
                raise DataError("cannot open video source cam")
            self.pending = False

        def read(self):  # noqa: ANN201
            self.frames -= 1
            return np.zeros((4, 4, 3), np.uint8) if self.frames >= 0 else None

    policy = CaptureOptions(reconnect=ReconnectPolicy(attempts=2, initial_delay=0.01))
    for fails, frames, status in ((2, 3, "lost"), (3, 0, "unreachable")):
        stats, said = PipelineStats(), []
        got = list(capture_frames(LateCamera(fails), policy, threading.Event(), stats, said.append))
        assert (len(got), stats.status, stats.reconnects) == (frames, status, 0), said
    assert "giving up on cam: it did not open in 2 attempts" in said[-1]
    said = []  # before: "at most 1 times", "in 1 attempts"
    once = CaptureOptions(reconnect=ReconnectPolicy(attempts=1, initial_delay=0.01))
    assert not list(capture_frames(LateCamera(3), once, threading.Event(), PipelineStats(), said.append))
    assert "(1 attempt at most)" in said[0] and said[-1].endswith("it did not open in 1 attempt")


def test_statuses_say_how_each_source_ended_and_rates_count_its_own_time():
    """Before: a stopped run said "ok" for every source, and a source lost early had its rate over
    the whole run."""
    from test_multi_source import BatchDetector, FileSource, PushedLiveSource

    from retina_edge.runtime.video import Pipeline, PipelineConfig
    from retina_edge.runtime.video.sources import ReconnectPolicy

    camera = PushedLiveSource(0)
    camera.push(0)
    camera.push(None)
    with Pipeline(BatchDetector(4), PipelineConfig(reconnect=ReconnectPolicy(attempts=1, initial_delay=0.01))) as pipeline:
        results = list(pipeline.run([camera, FileSource(1, 30)]))
    lost, fine = pipeline.source_stats
    assert (lost.status, fine.status) == ("lost", "ok") and len(results) == 31
    assert lost.finished < fine.finished  # its clock stopped at its last frame
    with Pipeline(BatchDetector(2)) as pipeline:
        for result in pipeline.run([FileSource(0, 50), FileSource(1, 50)]):
            if result.index == 3:
                pipeline.stop()
    assert [s.status for s in pipeline.source_stats] == ["stopped", "stopped"]


def test_submitted_frames_give_frame_results_tracked_in_order():
    """``submit`` gives what ``run`` yields (it gave bare Detections): a FrameResult, with track IDs."""
    from test_multi_source import MovingBoxesDetector, tagged

    from retina_edge.runtime.video import FrameResult, Pipeline, PipelineConfig, TrackerOptions

    with Pipeline(MovingBoxesDetector(), PipelineConfig(tracking=TrackerOptions())) as pipeline:
        results = [future.result(timeout=30) for future in [pipeline.submit(tagged(1, i), timestamp=i / 30)
                                                             for i in range(6)]]
    assert all(isinstance(r, FrameResult) for r in results) and [r.index for r in results] == list(range(6))
    assert results[3].timestamp == 0.1 and len(results[3].detections) == 2
    ids = np.stack([r.track_ids for r in results[2:]])
    assert (ids >= 0).all() and (ids == ids[0]).all() and len(set(ids[0])) == 2


def test_credentials_are_replaced_in_every_name():
    from retina_edge.cli.stream import source_slug, video_paths
    from retina_edge.runtime.video.sources import open_source, redact

    url = "rtsp://admin:pa55@cam1:554/live"
    assert redact(url) == "rtsp://***@cam1:554/live" and redact("rtsp://cam1/live") == "rtsp://cam1/live"
    assert redact(f"rtspsrc location={url} ! appsink") == "rtspsrc location=rtsp://***@cam1:554/live ! appsink"
    assert open_source(url).spec == "rtsp://***@cam1:554/live"  # opened by its run: nothing connects here
    # Before: hidden up to the first "@" only, while FFmpeg splits at the last ("http://***@ss3cret@...").
    for secret in ("p@ss3cret", "pa/ss3cret", "p@ss/3cret@"):
        shown = redact(f"opening 'http://user:{secret}@127.0.0.1:8554/x.mjpg' again")
        assert shown == "opening 'http://***@127.0.0.1:8554/x.mjpg' again" and "3cret" not in shown
    assert source_slug(url) == "cam1_554_live" and video_paths("o.mp4", [url, "x.mp4"])[0].name == "o-0-cam1_554_live.mp4"


@pytest.mark.parametrize(("spec", "shown"), [
    # Before: both came back unchanged, so the password reached names, logs, --jsonl and --json.
    ("rtspsrc location=rtsp://cam/s user-id=admin user-pw=s3cret latency=0 ! appsink",
     "rtspsrc location=rtsp://cam/s user-id=*** user-pw=*** latency=0 ! appsink"),
    ("http://cam/video.cgi?user=admin&pwd=s3cret&resolution=640", "http://cam/video.cgi?user=***&pwd=***&resolution=640"),
    ("souphttpsrc location=\"http://cam/a.mjpg?Token=s3cret#top\" user-pw=\"s3 cret\" ! jpegdec",
     "souphttpsrc location=\"http://cam/a.mjpg?Token=***#top\" user-pw=*** ! jpegdec"),
    ("http://cam/x?password=s3cret&passwd=s3cret&pass=s3cret&key=s3cret&auth=s3cret&api_key=s3cret&fps=5",
     "http://cam/x?password=***&passwd=***&pass=***&key=***&auth=***&api_key=***&fps=5"),
    ("opening 'rtsp://admin:s3cret@cam/s?token=s3cret' again", "opening 'rtsp://***@cam/s?token=***' again"),
    ("http://cam/x?keyframe=1&user_agent=vlc", "http://cam/x?keyframe=1&user_agent=vlc"),  # not secrets: kept
], ids=["gstreamer user-id user-pw", "query user pwd", "quoted", "query names", "userinfo and query", "kept"])
def test_credentials_outside_the_user_part_are_replaced(spec, shown):
    from retina_edge.cli.stream import source_slug
    from retina_edge.runtime.video.sources import open_source, redact

    assert redact(spec) == shown and "s3" not in source_slug(spec)
    if "://" in spec and "!" not in spec and " " not in spec:
        assert open_source(spec).spec == shown  # opened by its run: nothing connects here


def test_show_without_a_display_is_one_line_not_an_abort(root):
    """Before: Qt aborted the process (exit 134)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    run = subprocess.run([*CLI, "detect", "--model", str(root / "m.onnx"), "--source", str(root / "a.mp4"), "--show"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert "--show needs a" in run.stderr


def test_files_a_folder_cannot_use_are_named(root, tmp_path, capsys):
    """Before: a GIF, a looping link and a broken link were passed over without a word."""
    folder = tmp_path / "images"
    write_image_rgb(folder / "ok.png", SyntheticVideo(seed=3).frame(0)[:64, :64])
    (folder / "anim.gif").write_bytes(b"GIF89a")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    assert run_detect(root, "--source", str(folder)) == 0
    out = capsys.readouterr().out
    assert "skipped: anim.gif (GIF is not read" in out and "skipped: gone.jpg (a broken link)" in out
    assert "skipped: loop.jpg (a link that loops)" in out and "1 images, 0 detections, 3 unreadable skipped" in out


def test_detect_of_nothing_is_a_data_error(root):
    from retina_edge.errors import DataError
    from retina_edge.runtime import Detector

    with Detector(root / "m.onnx") as detector:
        with pytest.raises(DataError, match=r"got None \(did reading the image fail\?\)"):
            detector.detect(None)
        with pytest.raises(DataError, match="got a list holding None"):
            detector.detect([np.zeros((32, 32, 3), np.uint8), None])


@pytest.mark.parametrize(("setting", "named"), [({"reid_similarity": 2.0}, "reid_similarity"),
                                                ({"reid_similarity": float("nan")}, "reid_similarity"),
                                                ({"min_score": 5}, "min_score"), ({"lost_frames": -1}, "lost_frames")])
def test_tracker_options_refuse_values_out_of_range(setting, named):
    from retina_edge.errors import ConfigError
    from retina_edge.runtime.video.tracking import TrackerOptions

    with pytest.raises(ConfigError, match=f"TrackerOptions: {named} must be") as raised:
        TrackerOptions(**setting)
    assert raised.value.options == (named,)
