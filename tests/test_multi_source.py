"""Several sources through one pipeline, with stand-in sources and a stand-in detector (no model):
batches mix sources round-robin, files lose nothing and keep order, live sources keep their newest
frame and count drops, a silent source delays a batch only by the bounded wait, a lost source ends
only itself; tracking per source (the real ByteTrack); sinks, drawing and naming."""

from __future__ import annotations

import ast
import json
import queue
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from retina_edge.runtime.video import FrameResult, Pipeline, PipelineConfig
from retina_edge.runtime.core.results import Detections
from retina_edge.runtime.video.sources import ReconnectPolicy

NO_RECONNECT = ReconnectPolicy(attempts=0)


def tagged(source: int, index: int) -> np.ndarray:
    """An 8x8 frame whose first pixel says which source and frame it is."""
    image = np.zeros((8, 8, 3), np.uint8)
    image[0, 0] = (source, index % 256, index // 256)
    return image


class FileSource:
    live, fps = False, 30.0

    def __init__(self, number: int, count: int, *, fail_after: int | None = None) -> None:
        self.spec, self.number, self.count, self.position, self.fail_after = f"file{number}.mp4", number, count, 0, fail_after

    def read(self):  # noqa: ANN201
        if self.fail_after is not None and self.position == self.fail_after:
            raise OSError("corrupt stream")
        if self.position >= self.count:
            return None
        self.position += 1
        return tagged(self.number, self.position - 1)

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass


class PushedLiveSource:
    """A camera whose frames the test pushes; pushing None ends it (it then fails to reopen)."""

    live, fps = True, 30.0

    def __init__(self, number: int) -> None:
        self.spec, self.number, self.frames, self.reads = f"cam{number}", number, queue.Queue(), 0

    def push(self, index: int | None) -> None:
        self.frames.put(None if index is None else tagged(self.number, index))

    def read(self):  # noqa: ANN201
        image = self.frames.get(timeout=30)
        self.reads += 1
        return image

    def open(self) -> None:
        from retina_edge.errors import DataError

        raise DataError("gone")

    def close(self) -> None:
        pass


class BatchDetector:
    """Records each batch as (source, index) pairs; ``gate``: the first batch waits for it."""

    def __init__(self, max_batch: int, gate: threading.Event | None = None) -> None:
        self.max_batch, self.gate, self.batches = max_batch, gate, []
        self.first_batch_started = threading.Event()

    def detect(self, images):  # noqa: ANN001, ANN201
        self.batches.append([(int(im[0, 0, 0]), int(im[0, 0, 1]) + 256 * int(im[0, 0, 2])) for im in images])
        self.first_batch_started.set()
        if self.gate is not None and len(self.batches) == 1:
            assert self.gate.wait(30)
        empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
        return [empty for _ in images]


def run_all(pipeline: Pipeline, sources) -> list[FrameResult]:  # noqa: ANN001
    return list(pipeline.run(list(sources)))


def test_files_lose_nothing_keep_order_and_share_batches():
    detector = BatchDetector(4)
    counts = [7, 3, 12]
    with Pipeline(detector, PipelineConfig(max_batch_wait_ms=1000)) as pipeline:
        results = run_all(pipeline, [FileSource(n, c) for n, c in enumerate(counts)])
    for number, count in enumerate(counts):
        mine = [r for r in results if r.source == number]
        assert [r.index for r in mine] == list(range(count))
        assert all(r.source_name == f"file{number}.mp4" for r in mine)
        assert pipeline.source_stats[number].processed == count and pipeline.source_stats[number].ended_normally
    assert all(len(batch) <= 4 for batch in detector.batches)
    # While all three have frames, every batch holds each of them, and is full (files fill the room)
    assert all({s for s, _ in batch} == {0, 1, 2} and len(batch) == 4 for batch in detector.batches[:2])


def test_no_source_starves_another():
    """The batcher alone, over feeds filled by hand (no threads): 4 sources, 2 frames per batch."""
    from retina_edge.runtime.video.multi_source import Batcher, Feed, FeedOptions
    from retina_edge.runtime.video.stats import PipelineStats

    condition, stop = threading.Condition(), threading.Event()
    feeds = [Feed(n, FileSource(n, 0), FeedOptions(latest=False), PipelineStats(), condition, stop) for n in range(4)]
    batcher = Batcher(feeds, condition, stop, max_batch=2, max_wait_s=0.0)

    def serve(batches: int, fill: list[int]) -> np.ndarray:
        served = np.zeros(4, int)
        for _ in range(batches):
            for number in fill:
                feeds[number].frames.extend([object()] * (2 - len(feeds[number].frames)))
            batch = batcher.next_batch()
            assert len({n for n, _ in batch}) == 2  # two different sources
            for number, _ in batch:
                served[number] += 1
        return served

    assert list(serve(8, [0, 1, 2, 3])) == [4, 4, 4, 4]  # round-robin turns
    feeds[3].frames.clear()
    assert list(serve(6, [0, 1, 2])) == [4, 4, 4, 0]  # source 3 has nothing ready for a while...
    assert list(serve(6, [0, 1, 2, 3])) == [2, 2, 2, 6]  # ...and is served first once it has frames again


def test_live_source_keeps_only_its_newest_frame_and_counts_drops():
    gate = threading.Event()
    detector = BatchDetector(4, gate)
    camera = PushedLiveSource(0)
    with Pipeline(detector, PipelineConfig(reconnect=NO_RECONNECT)) as pipeline:
        collected: list[FrameResult] = []
        consumer = threading.Thread(target=lambda: collected.extend(pipeline.run([camera])))
        consumer.start()
        camera.push(0)
        assert detector.first_batch_started.wait(30)
        for index in range(1, 6):
            camera.push(index)
        while camera.reads < 6:  # all five read while the detector is busy
            threading.Event().wait(0.01)
        gate.set()
        camera.push(None)  # the camera is lost for good
        consumer.join(30)
    assert [r.index for r in collected] == [0, 5]
    stats = pipeline.source_stats[0]
    assert stats.dropped == 4 and stats.captured == 6 and stats.gave_up


def test_silent_source_delays_a_batch_by_the_bounded_wait_only():
    camera = PushedLiveSource(1)  # never delivers
    detector = BatchDetector(2)
    with Pipeline(detector, PipelineConfig(max_batch_wait_ms=20, reconnect=NO_RECONNECT)) as pipeline:
        results = pipeline.run([FileSource(0, 5), camera])
        got = [next(results) for _ in range(5)]
        pipeline.stop()
        camera.push(None)
        rest = list(results)
    assert [r.index for r in got] == list(range(5)) and not rest
    # the batches waited for the camera (bounded), then filled with the file's frames, in order
    assert [pair for batch in detector.batches for pair in batch] == [(0, i) for i in range(5)]


def test_a_lost_or_failing_source_ends_only_itself():
    camera = PushedLiveSource(0)
    camera.push(0)
    camera.push(None)  # one frame, then lost (reopening fails)
    with Pipeline(BatchDetector(4), PipelineConfig(reconnect=ReconnectPolicy(attempts=1, initial_delay=0.01))) as pipeline:
        results = run_all(pipeline, [camera, FileSource(1, 10), FileSource(2, 10, fail_after=4)])
    by_source = [[r.index for r in results if r.source == n] for n in range(3)]
    assert by_source == [[0], list(range(10)), list(range(4))]
    lost, fine, broken = pipeline.source_stats
    assert lost.gave_up and fine.ended_normally and broken.failed
    assert not pipeline.stats.ended_normally


class MovingBoxesDetector:
    """Source s shows s+1 boxes moving right 3 px per frame."""

    max_batch = 4

    def detect(self, images):  # noqa: ANN001, ANN201
        out = []
        for image in images:
            source, index = int(image[0, 0, 0]), int(image[0, 0, 1])
            boxes = np.array([[10 + 3 * index, 60 * k, 50 + 3 * index, 60 * k + 40] for k in range(source + 1)], np.float32)
            out.append(Detections(boxes, np.full(len(boxes), 0.9, np.float32), np.zeros(len(boxes), np.int64)))
        return out


def test_tracking_gives_stable_ids_per_source():
    from retina_edge.runtime.video.tracking import TrackerOptions

    config = PipelineConfig(tracking=TrackerOptions(), max_batch_wait_ms=1000)
    with Pipeline(MovingBoxesDetector(), config) as pipeline:
        results = run_all(pipeline, [FileSource(0, 20), FileSource(1, 20)])
    for source, objects in ((0, 1), (1, 2)):
        ids = np.stack([r.track_ids for r in results if r.source == source][2:])  # confirmed from the second frame
        assert ids.shape == (18, objects) and (ids >= 0).all()
        assert (ids == ids[0]).all() and len(set(ids[0])) == objects  # one ID per object, kept
    # per source: each source's tracker numbers its own tracks
    first_ids = {r.source: set(r.track_ids) for r in results if r.index == 5}
    assert first_ids[0] <= first_ids[1]


def test_tracker_ids_follow_the_detections_order():
    """The library returns detections in its own order (its tracks' order); IDs come back in ours."""
    from retina_edge.runtime.video.tracking import make_tracker

    tracker = make_tracker()
    scores, labels = np.array([0.9, 0.8], np.float32), np.zeros(2, np.int64)
    for step in range(4):
        boxes = np.array([[0, 0 + step, 20, 20 + step], [100 + step, 100, 140 + step, 140]], np.float32)
        ids = tracker.update(Detections(boxes, scores, labels))
        if step == 0:
            first = ids
    assert list(first) == [-1, -1]  # a new track is confirmed on its second frame
    assert ids[0] >= 0 and ids[1] >= 0 and ids[0] != ids[1]
    swapped = np.array([[104, 100, 144, 140], [0, 4, 20, 24]], np.float32)
    assert list(tracker.update(Detections(swapped, scores, labels))) == [ids[1], ids[0]]
    # below min_score (0.5 by default): not tracked, even where a track is
    faint = np.array([[105, 100, 145, 140], [0, 5, 20, 25]], np.float32)
    assert list(tracker.update(Detections(faint, np.array([0.9, 0.3], np.float32), labels))) == [ids[1], -1]


@pytest.mark.parametrize(("score", "starts"), [(0.65, False), (0.75, True)])
def test_a_track_starts_at_the_higher_of_activation_and_high_score(score, starts):
    """TrackerOptions' docstring: ``trackers`` starts tracks only from detections left over by the
    high-score stage, so with activation 0.6 and high 0.7 a 0.65 object never gets an ID."""
    from retina_edge.runtime.video.tracking import TrackerOptions, make_tracker

    tracker = make_tracker(TrackerOptions(reid_similarity=None, activation_score=0.6, high_score=0.7))
    found = [tracker.update(Detections(np.array([[10 + step, 10, 50 + step, 50]], np.float32),
                                       np.array([score], np.float32), np.zeros(1, np.int64)))[0] for step in range(5)]
    assert (found[-1] >= 0) == starts


def test_boxes_are_coloured_by_track_id():
    from retina_edge.runtime.video.draw import class_colour, draw_detections

    boxes = np.array([[10, 10, 60, 60], [100, 10, 150, 60]], np.float32)
    detections = Detections(boxes, np.array([0.9, 0.8], np.float32), np.zeros(2, np.int64))
    canvas = draw_detections(np.zeros((120, 200, 3), np.uint8), detections, track_ids=np.array([7, -1]))
    assert tuple(canvas[40, 10]) == class_colour(7)  # the left edge of the tracked box
    assert tuple(canvas[40, 100]) == class_colour(0)  # untracked: its class colour
    assert class_colour(7) != class_colour(0)


def test_status_line_outline_stays_on_its_text():
    """The outline hugs the white text from the first character to the last (a thick stroke's
    outline ran 12 px past the text's end under OpenCV 5.1, whose glyphs widen with thickness)."""
    from retina_edge.runtime.video.draw import draw_result

    result = FrameResult(0, 0.0, np.full((40, 400, 3), 128, np.uint8), Detections(np.zeros((0, 4), np.float32),
                         np.zeros(0, np.float32), np.zeros(0, np.int64)), 33.0, 30.0)
    canvas = draw_result(result, 15.0)[..., 0].astype(int)
    white, black = np.nonzero(canvas > 230)[1], np.nonzero(canvas < 30)[1]
    assert white.size and black.size
    assert abs(black.min() - white.min()) <= 2 and abs(black.max() - white.max()) <= 2


def test_jsonl_lines_name_source_frame_file_and_track(tmp_path):
    from retina_edge.runtime.video.sinks import JsonlSink

    detections = Detections(np.array([[1, 2, 3, 4]], np.float32), np.array([0.5], np.float32), np.zeros(1, np.int64), ("a",))
    sink = JsonlSink(tmp_path / "new" / "folder" / "d.jsonl")  # missing folders are created
    sink.write(FrameResult(3, 1.5, np.zeros((4, 4, 3), np.uint8), detections, 1.0, 1.0, 2, "cams/x", np.array([9]), "x.jpg"))
    sink.close()
    record = json.loads((tmp_path / "new" / "folder" / "d.jsonl").read_text())
    assert (record["source"], record["spec"], record["frame"], record["file"]) == (2, "cams/x", 3, "x.jpg")
    assert record["detections"][0]["track_id"] == 9


def test_an_output_that_cannot_start_leaves_no_temporary_file(tmp_path, monkeypatch):
    """Before: the staged ``.NAME.*.tmp`` stayed when a later step of the constructor raised."""
    import errno
    import os

    from retina_edge.robotics.channels import Channel
    from retina_edge.robotics.mcap_output import McapOutput
    from retina_edge.runtime.video import sinks

    with pytest.raises(KeyError):  # an unknown schema: found only after the MCAP header is written
        McapOutput(tmp_path / "r.mcap", [Channel("/camera_0/x", "pkg/msg/Nope", 0, "a.mp4")])
    assert list(tmp_path.iterdir()) == []
    real_open = os.open

    def open_for_writing_fails(path, flags, *args):  # noqa: ANN001, ANN202 - creating the temporary works
        if flags == os.O_WRONLY:
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, flags, *args)

    monkeypatch.setattr(sinks.os, "open", open_for_writing_fails)
    with pytest.raises(OSError, match="Too many"):
        sinks.JsonlSink(tmp_path / "d.jsonl")
    assert list(tmp_path.iterdir()) == []


def test_video_names_per_source(tmp_path):
    from retina_edge.cli.stream import video_paths
    from retina_edge.errors import RetinaEdgeError

    assert video_paths("out.mp4", ["a.mp4"]) == [Path("out.mp4")]
    assert video_paths("out.mp4", ["x/a.mp4", "rtsp://cam2:554/live"]) == [Path("out-0-a.mp4"), Path("out-1-cam2_554_live.mp4")]
    assert video_paths(str(tmp_path / "vids"), ["0", "nvarguscamerasrc sensor-id=1 ! appsink"]) == [
        tmp_path / "vids" / "0-camera0.mp4", tmp_path / "vids" / "1-nvarguscamerasrc.mp4"]
    with pytest.raises(RetinaEdgeError, match=r"\.mp4"):
        video_paths("out.mkv", ["a.mp4"])


def test_mp4_writer_without_a_usable_name_raises(tmp_path):
    """OpenCV picks the container by suffix: without one it wrote nothing, silently."""
    from retina_edge.errors import DataError
    from retina_edge.runtime.video.video_writer import Mp4Writer

    writer = Mp4Writer(tmp_path / "outvid", 15)
    with pytest.raises(DataError, match="outvid"):
        writer.write(np.zeros((16, 16, 3), np.uint8))


def test_stream_module_does_not_import_detect():
    """detect imports stream; stream importing detect back made a cycle."""
    import retina_edge.cli.stream as stream

    tree = ast.parse(Path(stream.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert "retina_edge.cli.detect" not in imported


def test_a_silent_stream_says_it_is_waiting(monkeypatch):
    """A stream that accepts the connection and sends nothing blocks the first open for the
    backend's timeout (FFmpeg: 30 s); the wait is logged meanwhile."""
    import logging

    from retina_edge.errors import DataError
    from retina_edge.runtime.video import sources

    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rw_timeout;3000000")
    monkeypatch.setattr(sources, "WAIT_NOTICE_S", 0.3)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger(sources.__name__).addHandler(handler)
    try:
        with pytest.raises(DataError):  # a live source opens in its run: here, by hand
            sources.open_source(f"http://127.0.0.1:{server.getsockname()[1]}/stream.mjpg").open()
    finally:
        logging.getLogger(sources.__name__).removeHandler(handler)
        server.close()
    assert any("waiting for http://127.0.0.1" in m for m in messages), messages


def test_synthetic_video_ground_truth_reads_back_in_motmetrics(tmp_path):
    import motmetrics as mm

    from retina_edge.data.synth_video import SyntheticVideo, write_mot_ground_truth

    video = SyntheticVideo(seed=3, objects=5)
    truth = mm.io.loadtxt(str(write_mot_ground_truth(tmp_path / "gt.txt", video, 10)), fmt="mot15-2D")
    assert len(truth) == 50 and sorted(truth.loc[1].index) == [1, 2, 3, 4, 5]
    number, label, (x, y, w, h) = video.boxes(9)[2]
    row = truth.loc[(10, number)]
    np.testing.assert_allclose(row[["X", "Y", "Width", "Height"]].to_numpy(float), [x, y, w, h], atol=0.01)
    assert row["ClassId"] == label + 1
