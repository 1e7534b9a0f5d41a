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


def interrupt_cli(argv: list[str], committed: Path, cwd: Path | None = None, at_least: int = 3) -> tuple[int, str]:
    """Runs ``python -m yamnet_beam.cli ARGV``, sends Ctrl-C (SIGINT) once ``committed`` holds ``at_least``
    parquet parts, and returns its exit code and stderr; the process is killed by its PID if it outlives that."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "yamnet_beam.cli", *argv]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
    try:
        deadline = time.monotonic() + 240
        while not (committed.is_dir() and len(list(committed.glob("*.parquet"))) >= at_least):
            assert proc.poll() is None and time.monotonic() < deadline, f"{argv[0]} ended before it could be stopped"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err
