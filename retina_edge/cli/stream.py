"""The streaming half of ``retina-edge detect``: video, cameras, URLs, GStreamer, through the pipeline.

Each result is written as it arrives (video frame and JSONL line together, the line flushed), and
SIGINT/SIGTERM only ask the pipeline to stop, so the video is finalised and nothing already
processed is lost.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys


def overlay(image, result, fps: float):  # noqa: ANN001, ANN201
    import cv2

    from retina_edge.runtime.draw import draw_detections

    canvas = draw_detections(image, result.detections)
    text = f"{fps:5.1f} FPS  latency {result.latency_ms:5.0f} ms  infer {result.inference_ms:4.0f} ms"
    cv2.putText(canvas, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(canvas, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def run_stream(args: argparse.Namespace, detector) -> int:  # noqa: ANN001
    from retina_edge.errors import SourceLostError
    from retina_edge.runtime.pipeline import Pipeline, PipelineConfig
    from retina_edge.runtime.sources import ReconnectPolicy, open_source
    from retina_edge.runtime.video_writer import Mp4Writer

    from retina_edge.cli.detect import class_filter

    config = PipelineConfig(mode=args.mode, max_fps=args.max_fps, classes=class_filter(args, detector),
                            reconnect=ReconnectPolicy(attempts=args.reconnect_attempts))
    source = open_source(args.source)
    pipeline = Pipeline(detector, config)
    sink = Mp4Writer(args.save, min(source.fps, args.max_fps or source.fps)) if args.save else None
    jsonl = open(args.jsonl, "w", encoding="utf-8") if args.jsonl else None  # noqa: SIM115 - closed in finally
    signalled = []

    def stop(signum, _frame) -> None:  # noqa: ANN001
        signalled.append(signal.Signals(signum).name)
        pipeline.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for result in pipeline.run(source, log=lambda message: print(message, file=sys.stderr)):
            stats = pipeline.stats
            if sink or args.show:
                annotated = overlay(result.image, result, stats.fps)
                if sink:
                    sink.write(annotated)
                if args.show:
                    _show(annotated, pipeline, args)
            if jsonl:
                jsonl.write(json.dumps({"frame": result.index, "timestamp": round(result.timestamp, 4),
                                        "latency_ms": round(result.latency_ms, 1),
                                        "detections": result.detections.to_json()}) + "\n")
                jsonl.flush()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        pipeline.close()
        detector.close()
        if sink:
            sink.close()
        if jsonl:
            jsonl.close()
    stats = pipeline.stats
    summary = (f"{stats.processed} frames processed, {stats.dropped} dropped (stale), {stats.reconnects} reconnects, "
               f"{stats.fps:.1f} FPS, mean inference {stats.inference_ms_total / max(1, stats.processed):.1f} ms")
    print(summary)
    # Supervisors (systemd, Kubernetes) restart on a non-zero exit: a stop by signal is 130, a lost source 1.
    if signalled:
        raise KeyboardInterrupt(f"{signalled[0]} after {stats.processed} frames; every output written so far is complete")
    if stats.gave_up:
        raise SourceLostError(f"gave up on {args.source} after {pipeline.config.reconnect.attempts} reconnect attempts "
                              f"({stats.processed} frames processed)")
    return 0


def _show(image_rgb, pipeline, args: argparse.Namespace) -> None:  # noqa: ANN001
    """Show a frame; q or Esc stops. Without GUI support (opencv-python-headless) say so once."""
    import cv2

    try:
        cv2.imshow("retina-edge", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
        key = cv2.waitKey(1) & 0xFF
    except cv2.error:
        print("--show needs an OpenCV with GUI support (pip install opencv-python) and a display; "
              "continuing without a window", file=sys.stderr)
        args.show = False
        return
    if key in (ord("q"), 27):
        pipeline.stop()
