"""Small helpers shared by tests: decode-thread accounting, a loopback HTTP server, PNG statistics."""

from __future__ import annotations

import io
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np


def decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("yamnet-beam-decode")]


class LoopbackHTTPServer:
    """Serves a directory on 127.0.0.1 (http:// inputs and downloads without a network); records request paths."""

    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        requests = self.requests

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def send_head(self):  # noqa: ANN202 - record every GET/HEAD path
                requests.append(self.path)
                return super().send_head()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def png_stats(png: bytes) -> dict[str, float]:
    """Size, pixel spread and distinct colours of a PNG: is the picture non-trivial?"""
    from matplotlib import image as matplotlib_image

    img = matplotlib_image.imread(io.BytesIO(png), format="png")
    rgb = np.asarray(img[..., :3] * 255, np.uint8).reshape(-1, 3)
    return {
        "height": img.shape[0],
        "width": img.shape[1],
        "std": float(rgb.std()),
        "colours": len(np.unique(rgb, axis=0)),
        "rgb": rgb,
    }
