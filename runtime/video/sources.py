"""Frame sources for the video pipeline: cameras, video files, network streams, GStreamer
pipelines and image folders, all yielding ``(H, W, 3)`` uint8 RGB frames (no torch).

``open_source(spec)`` decides from the spec:

- ``"0"`` / ``"/dev/video0"``: a camera (live);
- ``"rtsp://..."``, ``"http://..."``: a network stream (live);
- a string containing ``"!"``: a GStreamer pipeline ending in ``appsink`` (live), e.g. a Jetson
  CSI camera: ``nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1280,height=720 ! nvvidconv !
  video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1``;
- a folder: its images in name order (not live);
- anything else: a video file (not live).

Live sources can drop and be reopened; files end. A live source opens in its capture thread, under
the same reconnect policy as a reopening (:func:`capture_frames`), so one camera that is down at the
start (or a server that accepts and stays silent) holds up no other source. Credentials in a URL
(``rtsp://user:password@host/...``, ``?user=...&pwd=...``, ``?token=...``) or in GStreamer's
``user-id``/``user-pw`` are used to open it and appear nowhere else: a source's ``spec`` (its name
in results, logs and outputs) has them replaced (:func:`redact`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retina_edge.errors import DataError
from retina_edge.imageio import bgr_to_rgb, list_images, read_image_rgb, skipped_files
from retina_edge.progress import plural

logger = logging.getLogger(__name__)
#: While opening a live source blocks (a stream that accepts but sends nothing blocks up to the
#: backend's timeout, 30 s for FFmpeg), say every this many seconds that it is still waiting.
WAIT_NOTICE_S = 5.0


@dataclass(frozen=True)
class Frame:
    """One frame: position in the stream, capture time (``time.time()`` seconds), RGB pixels, and
    for a folder's image its path in the folder."""

    index: int
    timestamp: float
    image: np.ndarray
    name: str | None = None


#: ``scheme://user:password@`` (or ``scheme://token@``) in a source spec or a message, up to the
#: *last* ``@`` of the word: FFmpeg splits user from host at the last one, so an unencoded ``@`` or
#: ``/`` in a password is still part of what is hidden (an ``@`` later in a path hides a little more
#: than needed, never less).
_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^\s\"']*@")
#: GStreamer's credential properties (``rtspsrc``/``souphttpsrc`` ``user-id=admin user-pw=secret``),
#: their value quoted or up to the next space (a ``!`` without a space before it is hidden too).
_PROPERTIES = re.compile(r"""((?:^|\s)(?:user|proxy)-(?:id|pw)\s*=\s*)("[^"]*"|'[^']*'|[^\s"']+)""", re.IGNORECASE)
#: A query parameter that names a user or a secret (``?user=admin&pwd=secret``, ``&access_token=…``),
#: its value up to the next ``&``, ``#``, space or quote.
_QUERY = re.compile(r"([?&;](?:user(?:[_-]?(?:name|id))?|login|pass(?:word|wd|phrase)?|pwd|secret|auth(?:orization)?"
                    r"|(?:(?:access|auth|refresh)[_-]?)?token|(?:api[_-]?)?key|sig(?:nature)?)=)[^&#\s\"']*",
                    re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the credentials in it replaced by ``***``: a URL's user and password
    (``rtsp://***@host/path``), GStreamer's ``user-id=***``/``user-pw=***`` and query parameters
    such as ``?user=***&pwd=***`` or ``?token=***``; the rest is kept."""
    text = _CREDENTIALS.sub(r"\1***@", text)  # first: a "?" or "&" in a password is hidden with it
    return _QUERY.sub(r"\1***", _PROPERTIES.sub(r"\1***", text))


class VideoCaptureSource:
    """An OpenCV ``VideoCapture`` (camera, file, URL or GStreamer pipeline). ``spec`` is the name to
    show (:func:`redact`'s); ``connect=False`` leaves opening to the first :meth:`open` (``pending``
    until then).

    OpenCV's capture is not thread-safe: :meth:`read` and :meth:`close` belong to one thread (the
    pipeline's capture thread does both). A :meth:`close` while :meth:`open` blocks (a stream that
    does not answer, up to FFmpeg's 30 s) is kept: the capture that open makes after it is released."""

    def __init__(self, spec: str, *, live: bool, backend: int | None = None, connect: bool = True) -> None:
        self.spec, self.live, self._backend = redact(spec), live, backend
        self._target = int(spec) if spec.isdigit() else spec
        self._capture = None
        self._lock = threading.Lock()
        self._closes = 0  # close() calls so far: an open() that saw one happen while it waited gives its capture up
        self.pending = True
        if connect:
            self.open()

    def open(self) -> None:
        import cv2

        self.close()
        closes = self._closes
        with _waiting_notice(self.spec) if self.live else nullcontext():
            capture = (cv2.VideoCapture(self._target, self._backend) if self._backend is not None
                       else cv2.VideoCapture(self._target))
        if not capture.isOpened():
            capture.release()
            raise DataError(f"cannot open video source {self.spec}")
        with self._lock:
            if self._closes == closes:
                self._capture, self.pending = capture, False
                return
        capture.release()  # closed while it was opening: it stays closed

    @property
    def fps(self) -> float:
        import cv2

        value = self._capture.get(cv2.CAP_PROP_FPS) if self._capture is not None else 0.0
        return value if value and value < 1000 else 30.0

    def read(self) -> np.ndarray | None:
        """Next frame as RGB, or None when the stream ended or failed."""
        if self._capture is None:
            return None
        ok, frame = self._capture.read()
        return bgr_to_rgb(frame) if ok and frame is not None else None

    def close(self) -> None:
        with self._lock:
            self._closes += 1
            capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()


@contextmanager
def _waiting_notice(spec: str) -> Iterator[None]:
    """Log every :data:`WAIT_NOTICE_S` seconds while the body (opening ``spec``) is still blocked."""
    done = threading.Event()
    started = time.perf_counter()

    def notice() -> None:
        while not done.wait(WAIT_NOTICE_S):
            logger.warning(f"waiting for {spec} to answer ({time.perf_counter() - started:.0f} s so far)")

    thread = threading.Thread(target=notice, name="retina-edge-open-notice", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


class ImageFolderSource:
    """The images of a folder, in name order; unreadable files are skipped and counted.
    ``current_name``: the file name of the image :meth:`read` returned last."""

    live = False
    fps = 30.0

    def __init__(self, folder: str) -> None:
        self.spec = folder
        self.files = list_images(folder, recursive=False)
        passed_over = skipped_files(folder, recursive=False)
        if not self.files:
            raise DataError(f"no images in {folder}" + (f" (skipped: {', '.join(passed_over)})" if passed_over else ""))
        if passed_over:
            logger.warning(f"skipped {len(passed_over)} files of {folder}: {', '.join(passed_over)}")
        self.position = 0
        self.skipped = 0
        self.current_name: str | None = None

    def open(self) -> None:
        self.position = 0

    def read(self) -> np.ndarray | None:
        while self.position < len(self.files):
            path = self.files[self.position]
            self.position += 1
            try:
                image = read_image_rgb(path)
            except DataError:
                self.skipped += 1
                continue
            self.current_name = path.name
            return image
        return None

    def close(self) -> None:
        self.position = len(self.files)


def is_live(spec: str) -> bool:
    return spec.isdigit() or spec.startswith(("/dev/video", "rtsp://", "rtsps://", "http://", "https://")) or "!" in spec


def open_source(spec: str | int):  # noqa: ANN201
    """A frame source for ``spec`` (see the module docstring); :class:`DataError` if a file or folder
    cannot open. A live source is opened by the run that reads it (:func:`capture_frames`)."""
    spec = str(spec)
    if Path(spec).is_dir():
        return ImageFolderSource(spec)
    if "!" in spec:
        import cv2

        return VideoCaptureSource(spec, live=True, backend=cv2.CAP_GSTREAMER, connect=False)
    if not is_live(spec) and not Path(spec).is_file():
        raise DataError(f"source not found: {redact(spec)} (a camera index, /dev/videoN, video file, URL, GStreamer "
                        "pipeline or folder)")
    return VideoCaptureSource(spec, live=is_live(spec), connect=not is_live(spec))


@dataclass(frozen=True)
class ReconnectPolicy:
    """Reopening a live source that dropped: exponential backoff, bounded attempts."""

    attempts: int = 10
    initial_delay: float = 0.5
    max_delay: float = 8.0

    def delays(self):  # noqa: ANN201
        delay = self.initial_delay
        for _ in range(self.attempts):
            yield delay
            delay = min(delay * 2, self.max_delay)


@dataclass(frozen=True)
class CaptureOptions:
    """How frames are read from a source: ``max_fps`` caps the rate (None: as fast as it gives
    them); a live source that stops delivering is reopened under ``reconnect``."""

    max_fps: float | None = None
    reconnect: ReconnectPolicy = ReconnectPolicy()


def capture_frames(source, options: CaptureOptions, stop, stats, log) -> Iterator[Frame]:  # noqa: ANN001
    """``source``'s frames, numbered from 0 and stamped with their capture time, until it ends or
    ``stop`` is set (``stats.stopped``). A live source not open yet (``pending``) is opened first and
    one that stops delivering is reopened, both under ``options.reconnect`` (``stats.reconnects``
    counts reopenings; ``stats.gave_up`` is set when the attempts run out); each frame read adds to
    ``stats.captured``."""
    try:
        if getattr(source, "pending", False) and not _opened(source, options.reconnect, stop, stats, log):
            return
        yield from _frames(source, options, stop, stats, log)
    finally:
        stats.stopped = stop.is_set() and not stats.gave_up


def close_source(source, log) -> None:  # noqa: ANN001
    """Close ``source`` from the thread that reads it, once it reads no more: a capture is not
    thread-safe, and a close from another thread while a read blocks can crash the process. An
    error closing it is logged (the run's results are all out by then)."""
    try:
        source.close()
    except Exception as error:  # noqa: BLE001
        log(f"closing {getattr(source, 'spec', source)} failed: {error}")


def close_unread(source, thread, log) -> None:  # noqa: ANN001
    """After a run: close ``source`` if its capture ``thread`` never started (else the thread closes
    it as it ends, :func:`close_source`); say so when that thread is still blocked in a read or open."""
    if thread.ident is None:
        close_source(source, log)
    elif thread.is_alive():
        log(f"{getattr(source, 'spec', source)} is still blocked in a read or open; its capture thread closes it "
            "when that returns")


def _opened(source, policy: ReconnectPolicy, stop, stats, log) -> bool:  # noqa: ANN001
    """Open a live source that was not open yet: at once, then as a reopening is tried."""
    try:
        source.open()
    except DataError as error:
        log(f"{error}; trying again ({plural(policy.attempts, 'attempt')} at most)" if policy.attempts else str(error))
        if not reopen(source, policy, stop, log):
            if not stop.is_set():
                log(f"giving up on {source.spec}: it did not open in {plural(policy.attempts, 'attempt')}")
                stats.gave_up = True
            return False
    stats.started = time.perf_counter()  # its rate counts from here
    return True


def _frames(source, options: CaptureOptions, stop, stats, log) -> Iterator[Frame]:  # noqa: ANN001
    interval = 1.0 / options.max_fps if options.max_fps else 0.0
    next_time, index = time.perf_counter(), 0
    while not stop.is_set():
        if interval:
            if stop.wait(max(0.0, next_time - time.perf_counter())):
                return
            next_time = max(next_time + interval, time.perf_counter())
        image = source.read()
        if image is None:
            if _recovered(source, options.reconnect, stop, stats, log):
                continue
            return
        stats.captured += 1
        yield Frame(index, time.time(), image, getattr(source, "current_name", None))
        index += 1


def _recovered(source, policy: ReconnectPolicy, stop, stats, log) -> bool:  # noqa: ANN001
    """After a failed read: reopen a live source (True when it is back); a file has ended."""
    if not getattr(source, "live", False) or stop.is_set():
        return False
    log(f"source {source.spec} stopped delivering frames; reopening")
    if reopen(source, policy, stop, log):
        stats.reconnects += 1
        return True
    if not stop.is_set():
        log(f"giving up on {source.spec} after {plural(policy.attempts, 'attempt')}")
        stats.gave_up = True
    return False


def open_sources(specs) -> list:  # noqa: ANN001
    """Each spec opened (:func:`open_source`) or taken as a source; if one cannot open, those
    opened already are closed and the error raised."""
    sources = []
    try:
        for spec in specs:
            sources.append(open_source(spec) if isinstance(spec, (str, int)) else spec)
    except BaseException:
        for source in sources:
            source.close()
        raise
    if not sources:
        raise DataError("no sources given")
    return sources


def reopen(source, policy: ReconnectPolicy, stop, log) -> bool:  # noqa: ANN001
    """Try to reopen ``source`` until it opens, ``policy`` runs out, or ``stop`` is set."""
    for attempt, delay in enumerate(policy.delays(), start=1):
        if stop.wait(delay):
            return False
        try:
            source.open()
        except DataError as error:
            log(f"reconnect {attempt}/{policy.attempts} to {source.spec} failed: {error}")
            continue
        log(f"reconnected to {source.spec} after {attempt} attempt(s)")
        return True
    return False

