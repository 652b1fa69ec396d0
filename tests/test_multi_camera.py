"""`retina-edge detect` on several sources with a real model: outputs per source, SIGINT finalising
every output, a camera that dies and comes back while another keeps going; and the detect fixes
(--save without a suffix, --save-dir name collisions, --jsonl folders, file names in folder JSONL)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from mjpeg import MjpegServer, free_port
from outputs import written_lines
from retina_edge.cli.main import main
from retina_edge.data.synth_video import SyntheticVideo, write_video


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi")
    assert main(["build", "--weights", "preset:synth", "--batch", "1", "2", "2", "-o", str(root / "m.onnx")]) == 0
    write_video(root / "a.mp4", SyntheticVideo(seed=1), 12)
    write_video(root / "b.mp4", SyntheticVideo(seed=2), 8)
    return root


def frame_count(path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    return count


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_files_one_run_outputs_per_source(assets, tmp_path):
    listing = tmp_path / "sources.txt"
    listing.write_text(f"# cameras\n{assets / 'b.mp4'}\n\n")
    code = main(["detect", "--model", str(assets / "m.onnx"), "--source", str(assets / "a.mp4"), "--sources", str(listing),
                 "--track", "--save", str(tmp_path / "videos"), "--jsonl", str(tmp_path / "new" / "d.jsonl"),
                 "--json", str(tmp_path / "stats.json")])
    assert code == 0
    assert frame_count(tmp_path / "videos" / "0-a.mp4") == 12 and frame_count(tmp_path / "videos" / "1-b.mp4") == 8
    records = lines(tmp_path / "new" / "d.jsonl")
    for source, count in ((0, 12), (1, 8)):
        mine = [r for r in records if r["source"] == source]
        assert [r["frame"] for r in mine] == list(range(count))
        assert all(r["spec"].endswith("ab"[source] + ".mp4") for r in mine)
    tracked = [d["track_id"] for r in records for d in r["detections"]]
    assert tracked and max(tracked) >= 0
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert [s["frames"] for s in stats["sources"]] == [12, 8] and stats["total"]["frames"] == 20
    assert all(s["status"] == "ok" and s["latency_p99_ms"] is not None for s in stats["sources"])


def test_batched_detections_match_single_image_runs(assets):
    from retina_edge.runtime import Detector
    from retina_edge.runtime.video import Pipeline

    video = SyntheticVideo(seed=1)
    with Detector(assets / "m.onnx") as detector, Pipeline(detector) as pipeline:
        results = list(pipeline.run([str(assets / "a.mp4"), str(assets / "b.mp4")]))
        for result in results[:6]:
            alone = detector.detect([result.image])[0]
            assert len(alone) == len(result.detections)
            np.testing.assert_allclose(alone.boxes, result.detections.boxes, atol=1e-2)
    assert video.frame(0).shape == results[0].image.shape


def test_save_without_a_suffix_writes_a_folder_of_videos(assets, tmp_path):
    """Before: exit 0 and nothing written (OpenCV cannot pick a container without a suffix)."""
    assert main(["detect", "--model", str(assets / "m.onnx"), "--source", str(assets / "b.mp4"),
                 "--save", str(tmp_path / "outvid")]) == 0
    assert frame_count(tmp_path / "outvid" / "b.mp4") == 8


def test_save_dir_keeps_colliding_names_apart(assets, tmp_path):
    """Before: a/x.jpg, b/x.jpg and x.png were all written to x.jpg."""
    from retina_edge.imageio import write_image_rgb

    images = tmp_path / "images"
    frame = SyntheticVideo(seed=3).frame(0)
    for name in ("a/x.jpg", "b/x.jpg", "x.png"):
        write_image_rgb(images / name, frame)
    assert main(["detect", "--model", str(assets / "m.onnx"), "--source", str(images), "--save-dir", str(tmp_path / "out")]) == 0
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written == ["a/x.jpg", "b/x.jpg", "x.png"]


def test_folder_jsonl_lines_name_their_files(assets, tmp_path):
    """Before: a folder run as a stream wrote lines without the image's name; and --jsonl into a
    missing folder failed."""
    from retina_edge.imageio import write_image_rgb

    video = SyntheticVideo(seed=3)
    for index in range(3):
        write_image_rgb(tmp_path / "images" / f"img{index}.png", video.frame(index))
    out = tmp_path / "not" / "yet" / "d.jsonl"
    assert main(["detect", "--model", str(assets / "m.onnx"), "--source", str(tmp_path / "images"), "--jsonl", str(out)]) == 0
    assert [r["file"] for r in lines(out)] == ["img0.png", "img1.png", "img2.png"]


def read_mcap_detections(path) -> dict[str, list[dict]]:
    """{topic: decoded messages in log order} of a recording's detection topics, read by the ``mcap``
    reader and mcap-ros2-support's decoder (not our code)."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    found: dict[str, list] = {}
    with open(path, "rb") as stream:
        for _, channel, _, decoded in make_reader(stream, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
            if channel.topic.endswith("/detections"):
                found.setdefault(channel.topic, []).append(decoded)
    return found


@pytest.mark.parametrize("tracker", [[], ["--tracker", "ocsort", "--fixed-camera"]])
def test_record_holds_what_jsonl_holds_for_every_source(assets, tmp_path, tracker):
    """One ``detect`` run writing --record and --jsonl: per source and frame, the same detections
    (class, score, box centre, track id) in the MCAP recording as in the JSON lines, whichever
    tracker gives the IDs (the default, with camera-motion compensation, or another without)."""
    out = tmp_path / "run.mcap"
    assert main(["detect", "--model", str(assets / "m.onnx"), "--source", str(assets / "a.mp4"), "--source",
                 str(assets / "b.mp4"), "--track", *tracker, "--record", str(out), "--jsonl", str(tmp_path / "d.jsonl")]) == 0
    recorded, records = read_mcap_detections(out), lines(tmp_path / "d.jsonl")
    assert sorted(recorded) == ["/camera_0/detections", "/camera_1/detections"]
    for source, frames in ((0, 12), (1, 8)):
        mine = sorted((r for r in records if r["source"] == source), key=lambda r: r["frame"])
        messages = recorded[f"/camera_{source}/detections"]
        assert len(messages) == len(mine) == frames
        for record, message in zip(mine, messages):
            assert len(message.detections) == len(record["detections"])
            for detection, item in zip(record["detections"], message.detections):
                (x1, y1, x2, y2), center = detection["box"], item.bbox.center.position
                assert item.results[0].hypothesis.class_id == detection["name"]
                assert item.results[0].hypothesis.score == pytest.approx(detection["score"], abs=1e-4)
                assert (center.x, center.y) == pytest.approx(((x1 + x2) / 2, (y1 + y2) / 2), abs=0.01)
                assert item.id == (str(detection["track_id"]) if detection["track_id"] >= 0 else "")
    assert any(item.id for messages in recorded.values() for m in messages for item in m.detections)


def test_sigint_finalizes_every_output_of_every_source(assets, tmp_path):
    long_a = write_video(tmp_path / "la.mp4", SyntheticVideo(seed=5), 300)
    long_b = write_video(tmp_path / "lb.mp4", SyntheticVideo(seed=6), 300)
    out = tmp_path / "d.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "retina_edge.cli.main", "detect", "--model", str(assets / "m.onnx"),
                             "--source", str(long_a), "--source", str(long_b), "--track", "--save", str(tmp_path / "v"),
                             "--jsonl", str(out), "--record", str(tmp_path / "run.mcap")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 90
    while time.time() < deadline and written_lines(tmp_path, out.name) < 10:  # beside it until the end
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert "interrupted: SIGINT after" in proc.stderr.read().decode()
    records = lines(out)  # every line complete JSON
    for source, name in ((0, "0-la.mp4"), (1, "1-lb.mp4")):
        written = sum(r["source"] == source for r in records)
        assert 0 < written < 300 and frame_count(tmp_path / "v" / name) == written
        assert len(read_mcap_detections(tmp_path / "run.mcap")[f"/camera_{source}/detections"]) == written


def test_one_camera_dies_and_comes_back_while_the_other_keeps_going(assets, monkeypatch):
    from retina_edge.runtime import Detector
    from retina_edge.runtime.video import Pipeline, PipelineConfig
    from retina_edge.runtime.video.sources import ReconnectPolicy

    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rw_timeout;2000000")
    servers = [MjpegServer(free_port(), seed=seed, interval=0.06) for seed in (4, 5)]
    for server in servers:
        server.start()
    config = PipelineConfig(reconnect=ReconnectPolicy(attempts=20, initial_delay=0.2, max_delay=0.5))
    counts, messages, outage = [0, 0], [], {}
    with Pipeline(Detector(assets / "m.onnx"), config) as pipeline:
        urls = [f"http://127.0.0.1:{s.port}/stream.mjpg" for s in servers]
        for result in pipeline.run(urls, log=messages.append):
            counts[result.source] += 1
            if counts[1] == 5 and not outage:
                servers[1].stop()
                outage["at"] = counts[0]
                threading.Timer(1.5, servers[1].start).start()
            if pipeline.source_stats[1].reconnects and counts[1] > 10 or sum(counts) > 600:
                pipeline.stop()
    for server in servers:
        server.stop()
    assert pipeline.source_stats[1].reconnects >= 1, messages
    assert counts[1] > 10  # back after its reconnect
    assert counts[0] > outage["at"] + 5  # the other camera kept delivering meanwhile
    assert pipeline.source_stats[0].reconnects == 0


def test_drawn_outputs_show_detections_above_the_display_threshold_and_data_keeps_all(assets, tmp_path):
    """Before: drawn images showed every detection above the model's 0.05 threshold (dozens of faint
    boxes); now --draw-thresh (default 0.3) bounds what is drawn, and --save-json still has them all."""
    from retina_edge.imageio import read_image_rgb, write_image_rgb

    frame = SyntheticVideo(seed=4).frame(0)
    write_image_rgb(tmp_path / "in" / "f.png", frame)
    changed, saved = {}, {}
    for thresh in (None, "0.0", "1.0"):
        out = tmp_path / f"out-{thresh}"
        argv = ["detect", "--model", str(assets / "m.onnx"), "--source", str(tmp_path / "in"), "--save-dir", str(out),
                "--save-json", str(out / "d.json")] + (["--draw-thresh", thresh] if thresh else [])
        assert main(argv) == 0
        changed[thresh] = int((read_image_rgb(out / "f.png") != frame).any(axis=2).sum())
        saved[thresh] = json.loads((out / "d.json").read_text())
    scores = [record["score"] for record in saved[None]]
    assert min(scores) < 0.3 <= max(scores)  # the image has detections on both sides of the default
    assert changed["0.0"] > changed[None] > changed["1.0"] == 0
    assert saved[None] == saved["0.0"] == saved["1.0"]
