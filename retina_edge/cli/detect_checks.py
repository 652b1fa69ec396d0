"""Checks of ``retina-edge detect``'s flags against its sources, made before the model loads: each
mistake is one line and exit code 2, not a traceback after work (no torch)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from retina_edge.cli import robotics_options
from retina_edge.errors import DataError, RetinaEdgeError

#: A window opened and closed by a child process: where no window can open, Qt aborts the process
#: (exit 134) rather than raising, so the command's own process must not be the one to try.
WINDOW_PROBE = "import cv2; cv2.namedWindow('retina-edge'); cv2.destroyAllWindows()"


def check_arguments(args: argparse.Namespace, specs: list[str], *, is_images: bool, streamed: list[str]) -> None:
    """The flags apply to the sources (``is_images``: one image or image folder; ``streamed``: the
    flags given that run it as a stream), the sources exist, a window can open for ``--show``, the
    live view can listen."""
    from retina_edge.runtime.video.sources import is_live, redact

    # --fixed-camera is store_true: False (not given) counts as not set, like None for the others.
    loose = [flag for flag, value in (("--tracker", args.tracker), ("--fixed-camera", args.fixed_camera or None),
                                      ("--track-reid", args.track_reid)) if value is not None]
    if loose and not args.track:
        raise RetinaEdgeError(f"{' and '.join(loose)} {'sets' if len(loose) == 1 else 'set'} how --track tracks, "
                              "and --track is not given; add --track")
    missing = [spec for spec in specs if "!" not in spec and not is_live(spec) and not Path(spec).exists()]
    if missing:
        raise DataError(f"source not found: {redact(missing[0])} (a camera index, /dev/videoN, video file, URL, "
                        "GStreamer pipeline or folder)")
    if args.save_dir or args.save_json:
        check_image_outputs(args, specs, is_images=is_images, streamed=streamed)
    if args.show:
        check_display()
    robotics_options.check(args)


def check_image_outputs(args: argparse.Namespace, specs: list[str], *, is_images: bool, streamed: list[str]) -> None:
    """``--save-dir``/``--save-json`` write per image of an image or folder run as images: say what
    applies when the source is a stream, or the folder is run as one."""
    given = " and ".join(flag for flag, value in (("--save-dir", args.save_dir), ("--save-json", args.save_json))
                         if value)
    if is_images and streamed:
        raise RetinaEdgeError(f"{', '.join(streamed)} run {specs[0]} as a stream, whose outputs are --save OUT.mp4, "
                              f"--jsonl, --json and --record; {given} write per image when it runs as images (without "
                              f"{', '.join(streamed)}): choose one of the two")
    if not is_images:
        raise RetinaEdgeError("--save-dir and --save-json are for images and image folders; for a video, camera, "
                              "stream or several sources write --save OUT.mp4 and --jsonl OUT.jsonl")


def check_display() -> None:
    """Refuse ``--show`` where no window can open: no display, or an OpenCV without GUI support."""
    try:
        probe = subprocess.run([sys.executable, "-c", WINDOW_PROBE], capture_output=True, text=True, timeout=60)
        failed, said = probe.returncode != 0, probe.stderr
    except subprocess.TimeoutExpired:
        failed, said = True, ""
    if not failed:
        return
    if "not implemented" in said:  # opencv-python-headless
        raise RetinaEdgeError("--show needs an OpenCV with GUI support (pip install opencv-python) and a display; "
                              "write --save OUT.mp4 or watch with --foxglove instead")
    where = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    raise RetinaEdgeError(f"--show needs a display, and {f'{where} cannot be opened' if where else 'none is set (DISPLAY)'}; "
                          "write --save OUT.mp4 or watch with --foxglove instead")
