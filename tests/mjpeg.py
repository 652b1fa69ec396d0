"""A test-only camera: an MJPEG-over-HTTP stream of a synthetic video on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from retina_edge.data.synth_video import SyntheticVideo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MjpegServer:
    """multipart/x-mixed-replace JPEG stream of a synthetic video on 127.0.0.1 (a test-only camera)."""

    def __init__(self, port: int, *, seed: int = 4, interval: float = 0.03) -> None:
        import cv2

        video = SyntheticVideo(seed=seed)
        self.interval = interval
        self.jpegs = [cv2.imencode(".jpg", video.frame(i)[:, :, ::-1])[1].tobytes() for i in range(30)]
        self.port = port
        self.server = None
        self.stopping = threading.Event()

    def start(self) -> None:
        jpegs, stopping, interval = self.jpegs, self.stopping, self.interval
        stopping.clear()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    index = 0
                    while not stopping.is_set():
                        data = jpegs[index % len(jpegs)]
                        index += 1
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(data)).encode() + b"\r\n\r\n" + data + b"\r\n")
                        time.sleep(interval)
                except (BrokenPipeError, ConnectionResetError, ValueError, OSError):
                    return

            def log_message(self, *args):  # noqa: ANN002
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        ThreadingHTTPServer.daemon_threads = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()  # handlers return, closing their connections: the client sees the drop
        self.server.shutdown()
        self.server.server_close()
