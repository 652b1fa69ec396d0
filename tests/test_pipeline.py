"""The video pipeline: every frame of a file, equal to per-image runs; APIs; SIGINT; a live source
that dies and comes back (an MJPEG-over-HTTP server on loopback)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest

from retina_edge.cli.main import main
from retina_edge.runtime import Detector
from retina_edge.runtime.video import Pipeline, PipelineConfig
from retina_edge.runtime.video.sources import ReconnectPolicy
from retina_edge.data.synth_video import SyntheticVideo, write_video
from mjpeg import MjpegServer, free_port
from outputs import written_lines


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    assert main(["build", "--weights", "preset:synth", "--batch", "1", "1", "1", "-o", str(root / "m.onnx")]) == 0
    write_video(root / "in.mp4", SyntheticVideo(seed=1), 40)
    return root


def decoded_frames(path):
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame[:, :, ::-1].copy())


def test_file_gives_one_output_frame_and_line_per_input_frame(assets):
    out, lines = assets / "out.mp4", assets / "dets.jsonl"
    assert main(["detect", "--model", str(assets / "m.onnx"), "--source", str(assets / "in.mp4"),
                 "--save", str(out), "--jsonl", str(lines)]) == 0
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    inputs = decoded_frames(assets / "in.mp4")
    assert len(records) == len(inputs) == 40 == len(decoded_frames(out))
    assert [r["frame"] for r in records] == list(range(40))
    detector = Detector(assets / "m.onnx")
    for record, frame in zip(records, inputs):
        expected = detector.detect(frame)[0].to_json()
        assert record["detections"] == expected


def test_iterator_and_submit_apis_leave_no_threads(assets):
    detector = Detector(assets / "m.onnx")
    inputs = decoded_frames(assets / "in.mp4")
    with Pipeline(detector) as pipeline:
        results = list(pipeline.run(str(assets / "in.mp4")))
        futures = [pipeline.submit(frame) for frame in inputs[:5]]
        done = threading.Event()
        futures[-1].add_done_callback(lambda _: done.set())
        submitted = [f.result(timeout=30) for f in futures]
    assert done.is_set() and [r.index for r in results] == list(range(40))
    assert pipeline.stats.dropped == 0  # a file: every frame
    assert [r.index for r in submitted] == list(range(5))  # a FrameResult, as run yields
    for result, frame in zip(submitted, inputs):
        assert result.image is frame and result.latency_ms >= result.inference_ms > 0
        assert result.detections.to_json() == detector.detect(frame)[0].to_json()
    assert not [t for t in threading.enumerate() if t.name.startswith("retina-edge")]


def test_stop_from_another_thread_ends_the_run(assets):
    with Pipeline(Detector(assets / "m.onnx")) as pipeline:
        seen = []
        for result in pipeline.run(str(assets / "in.mp4")):
            seen.append(result.index)
            if len(seen) == 5:
                threading.Thread(target=pipeline.stop).start()
    assert 5 <= len(seen) < 40


def test_sigint_leaves_a_playable_video_matching_the_jsonl(assets, tmp_path):
    long_video = write_video(tmp_path / "long.mp4", SyntheticVideo(seed=2), 300)
    out, lines = tmp_path / "out.mp4", tmp_path / "dets.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "retina_edge.cli.main", "detect", "--model", str(assets / "m.onnx"),
                             "--source", str(long_video), "--save", str(out), "--jsonl", str(lines)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and written_lines(tmp_path, lines.name) < 10:  # beside it until the end
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130  # supervisors see a stopped run as one
    assert "interrupted: SIGINT after" in proc.stderr.read().decode()
    written = len(lines.read_text().splitlines())
    assert 10 <= written < 300
    assert len(decoded_frames(out)) == written


def test_live_source_that_dies_is_reopened(assets, monkeypatch):
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rw_timeout;2000000")
    port = free_port()
    server = MjpegServer(port)
    server.start()
    config = PipelineConfig(reconnect=ReconnectPolicy(attempts=20, initial_delay=0.2, max_delay=0.5))
    messages = []
    with Pipeline(Detector(assets / "m.onnx"), config) as pipeline:
        count = 0
        restarted_at = None
        for result in pipeline.run(f"http://127.0.0.1:{port}/stream.mjpg", log=messages.append):
            count += 1
            if count == 5:
                server.stop()
                threading.Timer(1.0, server.start).start()
                restarted_at = count
            if pipeline.stats.reconnects and count > (restarted_at or 0) + 5:
                pipeline.stop()
            if count > 400:
                break
    server.stop()
    assert pipeline.stats.reconnects >= 1, messages
    assert any("reconnected" in m for m in messages)


def test_source_lost_for_good_exits_1_and_says_so(assets, tmp_path, monkeypatch, capsys):
    """Supervisors restart on a non-zero exit: a live source that stays down ends the run with 1."""
    from retina_edge.cli.main import main

    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rw_timeout;2000000")
    port = free_port()
    server = MjpegServer(port)
    server.start()
    threading.Timer(2.0, server.stop).start()
    code = main(["detect", "--model", str(assets / "m.onnx"), "--source", f"http://127.0.0.1:{port}/stream.mjpg",
                 "--jsonl", str(tmp_path / "d.jsonl"), "--reconnect-attempts", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "error: gave up on http://127.0.0.1" in err and "Traceback" not in err
    assert (tmp_path / "d.jsonl").read_text().count("\n") > 0


class CountingDetector:
    """Sleeps longer for earlier frames (so later ones finish first) and records how many ran at once."""

    def __init__(self, streams: int, *, delay: float = 0.0) -> None:
        self.streams, self.delay, self.running, self.most = streams, delay, 0, 0
        self.lock = threading.Lock()

    def detect(self, images):  # noqa: ANN001, ANN201
        import numpy as np

        from retina_edge.runtime.core.results import Detections

        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(self.delay + 0.002 * (20 - int(images[0][0, 0, 0])))
        with self.lock:
            self.running -= 1
        return [Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))]


class ListSource:
    fps, spec = 30.0, "list"

    def __init__(self, count: int, *, live: bool) -> None:
        import numpy as np

        self.live = live
        self.frames = [np.full((8, 8, 3), index % 20, np.uint8) for index in range(count)]

    def read(self):  # noqa: ANN201
        return self.frames.pop(0) if self.frames else None

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass


NO_RECONNECT = ReconnectPolicy(attempts=0)


@pytest.mark.parametrize("streams", [1, 3])
def test_files_keep_the_detectors_streams_in_flight_and_yield_in_order(streams):
    detector = CountingDetector(streams)
    with Pipeline(detector) as pipeline:
        indices = [result.index for result in pipeline.run(ListSource(20, live=False))]
    assert indices == list(range(20)) and pipeline.stats.processed == 20
    assert detector.most == streams


def test_live_sources_keep_one_in_flight_unless_told():
    detector = CountingDetector(3)
    with Pipeline(detector, PipelineConfig(mode="every", reconnect=NO_RECONNECT)) as pipeline:  # every frame, but the source is live
        list(pipeline.run(ListSource(12, live=True)))
    assert detector.most == 3  # mode "every" is the file behaviour, streams included
    detector = CountingDetector(3)
    with Pipeline(detector, PipelineConfig(reconnect=NO_RECONNECT)) as pipeline:
        list(pipeline.run(ListSource(12, live=True)))
    assert detector.most == 1
    detector = CountingDetector(3)
    with Pipeline(detector, PipelineConfig(in_flight=2, reconnect=NO_RECONNECT)) as pipeline:
        list(pipeline.run(ListSource(12, live=True)))
    assert detector.most == 2


def test_stop_from_another_thread_ends_run_while_inferences_are_in_flight():
    """stop() while every slot is busy: the dispatcher must still hand the consumer the end marker
    (it used to return without one, and ``run`` waited forever for a result)."""
    detector = CountingDetector(2, delay=0.2)  # longer than the dispatcher's 50 ms wait for a slot
    pipeline = Pipeline(detector, PipelineConfig(mode="every"))
    results, finished = [], threading.Event()

    def consume() -> None:
        for result in pipeline.run(ListSource(200, live=False)):
            results.append(result.index)
            if len(results) == 3:
                pipeline.stop()
        finished.set()

    threading.Thread(target=consume, daemon=True).start()
    assert finished.wait(10), "run did not end after stop()"
    assert results[:3] == [0, 1, 2] and results == sorted(results)
    pipeline.close()


class LockThatSays:
    """The pipeline's lock, setting ``said`` when a thread finds it held (and then waiting for it)."""

    def __init__(self, said: threading.Event) -> None:
        self.real, self.said = threading.Lock(), said

    def __enter__(self) -> None:
        if not self.real.acquire(blocking=False):
            self.said.set()
            self.real.acquire()

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.real.release()


class GatedExecutor:
    """The submit worker, recording the order frames reach it; frame 0 waits there until the second
    submitter has moved: found the pipeline's lock held, or reached this executor itself."""

    def __init__(self, moved: threading.Event) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.real, self.moved, self.order, self.first_in = ThreadPoolExecutor(1), moved, [], threading.Event()

    def submit(self, fn, frame):  # noqa: ANN001, ANN201
        if frame.index == 0:
            self.first_in.set()
            self.moved.wait()
        self.order.append(frame.index)
        self.moved.set()
        return self.real.submit(fn, frame)

    def shutdown(self, wait: bool = True) -> None:
        self.real.shutdown(wait=wait)


def test_submit_from_two_threads_queues_frames_in_index_order():
    """Before: the index was taken under the lock and the frame queued after it, so frame 1 could
    reach the worker (and the tracker) before frame 0."""
    import numpy as np

    moved = threading.Event()
    with Pipeline(CountingDetector(1)) as pipeline:
        pipeline._lock, pipeline._executor = LockThatSays(moved), GatedExecutor(moved)
        gate, futures = pipeline._executor, {}
        image = np.zeros((8, 8, 3), np.uint8)
        first = threading.Thread(target=lambda: futures.setdefault("first", pipeline.submit(image)))
        first.start()
        gate.first_in.wait()  # frame 0 has its index and is on its way to the worker
        second = threading.Thread(target=lambda: futures.setdefault("second", pipeline.submit(image)))
        second.start()
        first.join()
        second.join()
        indices = [futures[name].result(timeout=30).index for name in ("first", "second")]
    assert gate.order == [0, 1] and indices == [0, 1]


def test_a_submit_that_cannot_queue_frees_its_slot():
    """Before: a submit whose executor refused the frame (shut down) kept its slot, and after
    ``queue_size + 1`` of them every submit blocked for ever."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    with Pipeline(CountingDetector(1)) as pipeline:
        pipeline._executor = ThreadPoolExecutor(1)
        pipeline._executor.shutdown()
        for _ in range(pipeline.config.queue_size + 1):  # one more would wait for ever without the fix
            with pytest.raises(RuntimeError, match="after shutdown"):
                pipeline.submit(np.zeros((8, 8, 3), np.uint8))
        taken = [pipeline._slots.acquire(blocking=False) for _ in range(pipeline.config.queue_size + 1)]
        assert all(taken), "a refused submit kept its slot"
        for _ in taken:
            pipeline._slots.release()
        pipeline._executor = None
        assert pipeline.submit(np.zeros((8, 8, 3), np.uint8)).result(timeout=30).index == 0  # no index was spent


class StallingSource:
    """A live camera that gives ``frames`` frames and then stalls, as a stream that stops answering
    does: its next read() (or, ``pending``, its first open()) blocks until ``release`` is set.
    Counts its closes and those that came while a read or open was in progress; ``is_open``: it
    holds its camera."""

    live, fps = True, 30.0

    def __init__(self, spec: str, *, frames: int = 0, pending: bool = False) -> None:
        self.spec, self.frames, self.pending = spec, frames, pending
        self.stalled, self.release, self.closed = threading.Event(), threading.Event(), threading.Event()
        self.busy, self.is_open, self.closes, self.closes_while_busy = False, not pending, 0, 0

    def _stall(self) -> None:
        self.busy = True
        self.stalled.set()
        self.release.wait()
        self.busy = False

    def open(self) -> None:
        self._stall()
        self.is_open, self.pending = True, False

    def read(self):  # noqa: ANN201
        import numpy as np

        if self.frames:
            self.frames -= 1
            return np.zeros((8, 8, 3), np.uint8)
        self._stall()
        return None

    def close(self) -> None:
        self.closes_while_busy += self.busy
        self.closes += 1
        self.is_open = False
        self.closed.set()


@pytest.mark.parametrize(("several", "stalls_in"), [(False, "read"), (True, "read"), (True, "open")],
                         ids=["one source, read", "several, read", "several, open"])
def test_a_stalled_source_is_closed_by_its_capture_thread_not_during_its_read(monkeypatch, several, stalls_in):
    """Before: the run gave up waiting for the capture thread and closed the source itself, while
    the thread was still inside read() (OpenCV's capture is not thread-safe: a crash) or open()
    (whose camera then stayed open after the run)."""
    from retina_edge.runtime.video import threads

    monkeypatch.setattr(threads, "JOIN_TIMEOUT_S", 0.01)  # the run stops waiting for its threads at once
    sources = [StallingSource(f"cam{number}", frames=int(stalls_in == "read"), pending=stalls_in == "open")
               for number in range(2 if several else 1)]
    messages: list[str] = []
    pipeline = Pipeline(CountingDetector(1), PipelineConfig(reconnect=NO_RECONNECT))
    run = pipeline.run(sources if several else sources[0], log=messages.append)
    if stalls_in == "read":
        next(run)  # a frame; each source then stalls in its next read
        assert all(source.stalled.wait(30) for source in sources)
        run.close()  # the consumer leaves (an error writing an output, a break)
    else:  # one source's run waits for its first frame whatever happens: several end on stop()
        consumer = threading.Thread(target=lambda: list(run), daemon=True)
        consumer.start()
        assert all(source.stalled.wait(30) for source in sources)
        pipeline.stop()
        consumer.join()
    for source in sources:
        source.release.set()
    assert all(source.closed.wait(30) for source in sources)
    pipeline.close()
    assert [(source.closes, source.closes_while_busy, source.is_open) for source in sources] == [(1, 0, False)] * len(sources)
    assert sum("still blocked in a read or open" in message for message in messages) == len(sources), messages


def test_a_capture_closed_while_it_opens_is_released_when_the_open_returns(monkeypatch):
    """Before: close() found no capture yet and did nothing; the capture that open() made after it
    was kept, and the camera stayed open."""
    import cv2

    from retina_edge.runtime.video.sources import VideoCaptureSource

    made, entered, answer = [], threading.Event(), threading.Event()

    class SlowCapture:
        def __init__(self, *args) -> None:  # noqa: ANN002
            self.released = False
            made.append(self)
            entered.set()
            answer.wait()

        def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
            return True

        def release(self) -> None:
            self.released = True

    monkeypatch.setattr(cv2, "VideoCapture", SlowCapture)
    source = VideoCaptureSource("rtsp://cam/s", live=True, connect=False)
    opening = threading.Thread(target=source.open, daemon=True)
    opening.start()
    entered.wait()
    source.close()
    answer.set()
    opening.join()
    assert [capture.released for capture in made] == [True] and source.read() is None and source.pending


def test_detect_leaves_a_stalled_source_to_its_capture_thread(assets, tmp_path, monkeypatch, capsys):
    """An output failing (a full disk) while a camera is stalled in a read: ``detect`` used to close
    every source itself after the pipeline gave up waiting, while the capture thread was in the read."""
    import errno

    from retina_edge.runtime.video import sinks, sources, threads

    monkeypatch.setattr(threads, "JOIN_TIMEOUT_S", 0.01)
    camera = StallingSource("rtsp://cam/s", frames=1)
    monkeypatch.setattr(sources, "open_sources", lambda specs: [camera])

    def disk_full(self, result) -> None:  # noqa: ANN001
        assert camera.stalled.wait(30)  # the capture thread is in its next read
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(sinks.JsonlSink, "write", disk_full)
    assert main(["detect", "--model", str(assets / "m.onnx"), "--source", "rtsp://cam/s", "--backend", "onnxruntime",
                 "--streams", "1", "--reconnect-attempts", "0", "--jsonl", str(tmp_path / "d.jsonl")]) == 2
    assert "No space left on device" in capsys.readouterr().err
    camera.release.set()
    assert camera.closed.wait(30)
    assert (camera.closes, camera.closes_while_busy, camera.is_open) == (1, 0, False)
