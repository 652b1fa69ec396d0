"""The streaming half of ``retina-edge detect``: videos, cameras, URLs, GStreamer, folders as streams,
one source or several through one pipeline.

Outputs are sinks (``write(result)``/``close()``, :mod:`retina_edge.runtime.video.sinks`) opened by
:func:`open_sinks`, fed every result as it arrives, and closed in every case (end, error, SIGINT or
SIGTERM, which only ask the pipeline to stop), so videos are finalised and nothing already processed
is lost. This module does not import :mod:`retina_edge.cli.detect` (detect imports it).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

from retina_edge.progress import plural


#: A source list is a short text file: larger (``/dev/zero``, a video given by mistake) is refused
#: before it is read whole; more sources than this would not share one model usefully.
MAX_SOURCES_BYTES = 1 << 20
MAX_SOURCES = 256


def source_specs(args: argparse.Namespace) -> list[str]:
    """``--source`` values, then the lines of ``--sources FILE`` (blank lines and ``#`` comments
    skipped: a line starting with ``#``, or the rest of a line from a ``#`` after a space)."""
    from retina_edge.errors import DataError

    specs = list(args.source or [])
    if args.sources:
        specs += [spec for line in _source_lines(args.sources) if (spec := re.sub(r"(^|\s)#.*", "", line).strip())]
    if not specs:
        raise DataError("no source given: --source SPEC (repeatable) or --sources FILE (one per line)")
    if len(specs) > MAX_SOURCES:
        raise DataError(f"{len(specs)} sources; one run takes at most {MAX_SOURCES}")
    return specs


def _source_lines(path: str) -> list[str]:
    """The lines of a source list: UTF-8 text of at most :data:`MAX_SOURCES_BYTES`."""
    from retina_edge.errors import DataError

    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SOURCES_BYTES + 1)
    except OSError as error:
        raise DataError(f"cannot read the source list {path}: {error.strerror or error}") from None
    if len(data) > MAX_SOURCES_BYTES:
        raise DataError(f"the source list {path} is over {MAX_SOURCES_BYTES >> 20} MiB; it should be a text file "
                        "of sources, one per line")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = "\0"
    if "\0" in text:
        raise DataError(f"the source list {path} is not a text file (not UTF-8 text); it should hold sources, one per line")
    return text.splitlines()


def source_slug(spec: str) -> str:
    """A file-name-safe short name for a source: a file's stem, a URL's host and path, ``video0``,
    ``camera0``, or a GStreamer pipeline's first element."""
    from retina_edge.runtime.video.sources import redact

    text = spec.strip()
    if "!" in text:
        text = text.split("!")[0].split()[0] if text.split("!")[0].split() else "gstreamer"
    elif "://" in text:
        text = redact(text).split("://", 1)[1].removeprefix("***@")  # a password never names a file
    elif text.isdigit():
        text = f"camera{text}"
    else:
        text = Path(text.rstrip("/")).stem or Path(text.rstrip("/")).name
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.")[:48] or "source"


def video_paths(save: str, specs: list[str]) -> list[Path]:
    """Where ``--save`` puts each source's video: ``X.mp4`` is the file for one source and the stem of
    ``X-<index>-<name>.mp4`` for several; a name without a suffix is a folder of ``<name>.mp4``
    (``<index>-<name>.mp4`` for several)."""
    from retina_edge.errors import RetinaEdgeError

    target = Path(save)
    names = [source_slug(spec) for spec in specs]
    if len(specs) > 1:
        names = [f"{index}-{name}" for index, name in enumerate(names)]
    if target.suffix.lower() == ".mp4":
        if len(specs) == 1:
            return [target]
        return [target.with_name(f"{target.stem}-{name}.mp4") for name in names]
    if target.suffix and not target.is_dir():
        raise RetinaEdgeError(f"--save {save}: videos are written as .mp4; give a name ending in .mp4, or a folder")
    return [target / f"{name}.mp4" for name in names]


def open_sinks(args: argparse.Namespace, names: list[str], sources: list) -> list:
    """The per-result outputs the arguments ask for: JSON lines, one video per source, an MCAP
    recording and a live Foxglove view (one sink for both). ``names``: the sources' specs as shown
    (credentials replaced)."""
    from retina_edge.cli import robotics_options
    from retina_edge.runtime.video.sinks import JsonlSink, VideoSink, close_all

    sinks: list = []
    try:
        if args.jsonl:
            sinks.append(JsonlSink(args.jsonl))
        if args.save:  # a camera's rate is known once it is open: asked at its first frame
            rates = [lambda source=source: min(source.fps, args.max_fps or source.fps) for source in sources]
            sinks.append(VideoSink(video_paths(args.save, names), rates, min_score=args.draw_thresh))
        sinks += robotics_options.open_sinks(args, names)
    except BaseException:
        close_all(sinks)
        raise
    return sinks


@contextmanager
def stop_on_signals(pipeline):  # noqa: ANN001, ANN201
    """SIGINT and SIGTERM ask ``pipeline`` to stop (the run ends after the frame in hand); yields the
    list of signal names received. The previous handlers come back on exit."""
    received: list[str] = []

    def stop(signum, _frame) -> None:  # noqa: ANN001
        received.append(signal.Signals(signum).name)
        pipeline.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def pipeline_config(args: argparse.Namespace, classes):  # noqa: ANN001, ANN201
    from retina_edge.runtime.video import PipelineConfig
    from retina_edge.runtime.video.sources import ReconnectPolicy

    return PipelineConfig(mode=args.mode, max_fps=args.max_fps, classes=classes,
                          reconnect=ReconnectPolicy(attempts=args.reconnect_attempts),
                          max_batch_wait_ms=args.max_batch_wait_ms,
                          tracking=tracker_options(args) if args.track else None)


def tracker_options(args: argparse.Namespace):  # noqa: ANN201
    """``--tracker``, ``--fixed-camera`` and ``--track-reid`` (0: no colour checks) over
    :class:`TrackerOptions`' defaults."""
    from retina_edge.runtime.video.tracking import TrackerOptions

    similarity = TrackerOptions.reid_similarity if args.track_reid is None else args.track_reid
    return TrackerOptions(tracker=args.tracker or TrackerOptions.tracker, reid_similarity=similarity or None,
                          camera_motion=not getattr(args, "fixed_camera", False))


def run_stream(args: argparse.Namespace, detector, classes) -> int:  # noqa: ANN001
    """Run every source through one pipeline, writing each result to every sink; 0 when every
    source ended normally, :class:`SourceLostError` (exit 1) when one was lost, failed or never
    opened, and KeyboardInterrupt (exit 130) on SIGINT/SIGTERM. An error while writing (a full
    disk) ends the run; it is the one reported, whatever closing the outputs says after it."""
    from retina_edge.runtime.video import Pipeline
    from retina_edge.runtime.video.sources import open_sources, redact

    specs = source_specs(args)
    names = [redact(spec) for spec in specs]
    try:
        sources = open_sources(specs)
    except BaseException:
        detector.close()
        raise
    pipeline = Pipeline(detector, pipeline_config(args, classes))
    sinks: list = []
    run = None
    with stop_on_signals(pipeline) as received:
        try:
            sinks = open_sinks(args, names, sources)
            run = pipeline.run(sources if len(sources) > 1 else sources[0],
                               log=lambda message: print(message, file=sys.stderr))
            for result in run:
                for sink in sinks:
                    sink.write(result)
                if args.show:
                    _show(result, pipeline, args)
        except BaseException:
            _close(pipeline, detector, _not_run(sources, run), sinks, failed=True)
            raise
        _close(pipeline, detector, _not_run(sources, run), sinks, failed=False)
    return _report(args, pipeline, names, sinks, received)


def _not_run(sources: list, run) -> list:  # noqa: ANN001
    """``sources`` if the pipeline never began to ``run`` them, else none: a run's capture threads
    close their sources themselves, and a close from here could meet a read still blocked in one."""
    import inspect

    return sources if run is None or inspect.getgeneratorstate(run) == inspect.GEN_CREATED else []


def _close(pipeline, detector, sources: list, sinks: list, *, failed: bool) -> None:  # noqa: ANN001
    """End the run and finish every output; when the run ``failed``, a failure to close is not raised
    over the error that ended it (the first is the one to tell)."""
    from retina_edge.runtime.video.sinks import close_all

    pipeline.close()
    detector.close()
    for source in sources:
        source.close()
    try:
        close_all(sinks)
    except Exception:
        if not failed:
            raise


def _report(args: argparse.Namespace, pipeline, names: list[str], sinks: list, received: list[str]) -> int:  # noqa: ANN001
    """Print the summary (one line per source when several) and what each video holds, write
    ``--json``, choose the outcome."""
    from retina_edge.errors import SourceLostError

    stats = pipeline.stats
    print(f"{stats.processed} frames processed, {stats.dropped} dropped (stale), {stats.reconnects} reconnects, "
          f"{stats.fps:.1f} FPS, mean inference {stats.inference_ms_total / max(1, stats.processed):.1f} ms")
    per_source = [{"source": index, "spec": name, **part.summary()}
                  for index, (name, part) in enumerate(zip(names, pipeline.source_stats))]
    if len(names) > 1:
        for row in per_source:
            print(f"  [{row['source']}] {row['spec']}: {row['frames']} frames, {row['dropped']} dropped, "
                  f"{row['fps']:.1f} FPS, latency p50 {row['latency_p50_ms']} ms p99 {row['latency_p99_ms']} ms, "
                  f"{row['status']}")
    _report_videos(sinks)
    if args.json:
        from retina_edge.atomic import write_text_atomic

        write_text_atomic(args.json, json.dumps({"total": stats.summary(), "sources": per_source}, indent=2))
    # Supervisors (systemd, Kubernetes) restart on a non-zero exit: a stop by signal is 130, a lost source 1.
    if received:
        raise KeyboardInterrupt(f"{received[0]} after {stats.processed} frames; every output written so far is complete")
    lost = [f"{row['spec']} ({row['status']})" for row in per_source if row["status"] in ("lost", "unreachable", "failed")]
    if lost:
        attempts = pipeline.config.reconnect.attempts
        raise SourceLostError(f"gave up on {', '.join(lost)} ({plural(attempts, 'reconnect attempt')} "
                              f"allowed each; {stats.processed} frames processed)")
    return 0


def _report_videos(sinks: list) -> None:
    """One line per video written: its frames, and how many of another size were letterboxed."""
    from retina_edge.runtime.video.sinks import VideoSink

    for writer in (writer for sink in sinks if isinstance(sink, VideoSink) for writer in sink.writers if writer.frames):
        width, height = writer.size
        print(f"wrote {writer.path}: {writer.frames} frames"
              + (f" ({writer.letterboxed} of another size letterboxed into {width}x{height})" if writer.letterboxed else ""))


def _show(result, pipeline, args: argparse.Namespace) -> None:  # noqa: ANN001
    """Show a frame (a window per source); q or Esc stops. Without GUI support say so once."""
    import cv2

    from retina_edge.runtime.video.draw import draw_result

    image = draw_result(result, pipeline.source_stats[result.source].fps, min_score=args.draw_thresh)
    try:
        cv2.imshow(f"retina-edge {result.source}", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        key = cv2.waitKey(1) & 0xFF
    except cv2.error:
        print("--show needs an OpenCV with GUI support (pip install opencv-python) and a display; "
              "continuing without a window", file=sys.stderr)
        args.show = False
        return
    if key in (ord("q"), 27):
        pipeline.stop()
