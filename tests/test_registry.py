"""The generic registry (retina_edge/registry.py) and the two doors no other door test opens in
process: a graph tail and a tracker, registered here, used by export/``Detector`` and ``detect
--track``, and taken out again with ``unregister_tail``/``unregister_tracker``."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

from retina_edge.cli.main import main
from retina_edge.contract import TAILS, TailSpec, register_tail, unregister_tail
from retina_edge.errors import RetinaEdgeError
from retina_edge.registry import Registry
from retina_edge.runtime.video.tracking import TRACKERS, TrackerSpec, register_tracker, unregister_tracker


def test_unregister_before_the_first_lookup_stays_undone():
    """Before: the built-ins were loaded by the next lookup, after the unregister, and came back."""
    table = Registry("thing", builtins=lambda: [table.register(name, name.upper()) for name in ("a", "b")])
    table.unregister("a")
    assert table.names() == ("b",)
    with pytest.raises(RetinaEdgeError, match="unknown thing 'a'; expected one of: 'b'"):
        table.get("a")


def test_a_lookup_while_another_thread_loads_the_builtins_waits_for_all_of_them():
    """Before: the loading thread cleared the built-ins before registering them, so a lookup in
    another thread in between found some of them only ("unknown thing 'b'")."""
    halfway, go_on = threading.Event(), threading.Event()

    def builtins() -> None:
        table.register("a", 1)
        halfway.set()
        go_on.wait()
        table.register("b", 2)  # a built-in's own register does not wait for the loading it is part of

    table = Registry("thing", builtins=builtins)
    loading = threading.Thread(target=table.names, daemon=True)
    loading.start()
    found: list = []
    lookup = threading.Thread(target=lambda: found.append(_get(table, "b")), daemon=True)
    try:
        halfway.wait()
        lookup.start()
        while lookup.is_alive() and not _inside(lookup, "_load_builtins"):  # there it waits for go_on (the lock)
            time.sleep(0.001)
        waited = lookup.is_alive() and not found
    finally:
        go_on.set()
        loading.join()
        lookup.join()
    assert waited, f"the lookup did not wait for the built-ins: {found}"
    assert found == [2] and table.names() == ("a", "b")


def _inside(thread: threading.Thread, function: str) -> bool:
    frame = sys._current_frames().get(thread.ident)
    while frame is not None and frame.f_code.co_name != function:
        frame = frame.f_back
    return frame is not None


def _get(table: Registry, name: str) -> object:
    try:
        return table.get(name)
    except RetinaEdgeError as error:
        return str(error)


@pytest.fixture(scope="module")
def nms_graph(tmp_path_factory):
    """The tiny model exported with the built-in NMS tail."""
    from retina_edge.export.onnx_export import ExportOptions, export_onnx
    from retina_edge.preprocess import PreprocessConfig
    from tiny import tiny_model

    return export_onnx(tiny_model(), tmp_path_factory.mktemp("graph") / "nms.onnx",
                       ExportOptions(preprocess=PreprocessConfig(128, 160), tail="nms"))


@pytest.fixture
def top5_tail():
    """The built-in NMS tail's module under another name, capped at 5 detections."""
    spec = register_tail(TailSpec("nms-top5", "detections", "retina_edge.export.graph_heads:NmsDetections",
                                  max_detections=5, description="nms, at most 5 detections (tests)"))
    yield spec.name
    unregister_tail(spec.name)
    assert spec.name not in TAILS.names()


def test_a_registered_tail_exports_and_runs(top5_tail, nms_graph, tmp_path, capsys):
    from retina_edge.export.onnx_export import ExportOptions, export_onnx
    from retina_edge.preprocess import PreprocessConfig
    from retina_edge.runtime import Detector
    from tiny import tiny_model

    assert main(["export", "--help"]) == 0 and top5_tail in capsys.readouterr().out
    image = np.random.default_rng(0).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    path = export_onnx(tiny_model(), tmp_path / "top5.onnx", ExportOptions(preprocess=PreprocessConfig(128, 160),
                                                                          tail=top5_tail))
    with Detector(nms_graph) as full, Detector(path) as top5:
        (everything,), (capped,) = full.detect(image), top5.detect(image)
    assert len(everything.boxes) > 5 and len(capped.boxes) == 5  # the tiny model is confident everywhere
    np.testing.assert_allclose(capped.boxes, everything.boxes[:5], atol=1e-3)
    np.testing.assert_array_equal(capped.labels, everything.labels[:5])


class CountingIds:
    """A tracker that numbers the detections 100, 101, ... in every frame (its IDs are recognisable)."""

    def __init__(self, options) -> None:  # noqa: ANN001 - TrackerOptions
        self.frames = 0

    def update(self, detections, timestamp=None, image=None) -> np.ndarray:  # noqa: ANN001
        self.frames += 1
        return np.arange(100, 100 + len(detections.boxes), dtype=np.int64)


@pytest.fixture
def counting_tracker():
    spec = register_tracker(TrackerSpec("counting", CountingIds, description="numbers the detections (tests)"))
    yield spec.name
    unregister_tracker(spec.name)
    assert spec.name not in TRACKERS.names()


def test_a_registered_tracker_tracks_in_detect(counting_tracker, nms_graph, tmp_path, capsys):
    import json

    from retina_edge.data.synth_video import SyntheticVideo, write_video

    assert main(["detect", "--help"]) == 0 and counting_tracker in capsys.readouterr().out
    write_video(tmp_path / "clip.mp4", SyntheticVideo(seed=1), 3)
    assert main(["detect", "--model", str(nms_graph), "--source", str(tmp_path / "clip.mp4"), "--track",
                 "--tracker", counting_tracker, "--fixed-camera", "--track-reid", "0", "--streams", "1",
                 "--jsonl", str(tmp_path / "t.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(row["detections"] for row in rows)
    assert all([d["track_id"] for d in row["detections"]] == list(range(100, 100 + len(row["detections"])))
               for row in rows)
