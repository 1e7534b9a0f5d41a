"""Progress lines while a run goes on, from what it has committed: runner-agnostic (local, Dataflow or Flink
alike), since files/ parts are the record of what is done."""

from __future__ import annotations

import logging
import sys
import threading
import time

from yamnet_beam.table.output import OutputDir, read_json

_LOG = logging.getLogger(__name__)


class Progress:
    """Reports progress while a run goes on, from what it has committed: runner-agnostic (local,
    Dataflow or Flink alike), since files/ parts are the record of what is done."""

    def __init__(
        self, out: OutputDir, total_files: int | None, interval_s: float, stream=None, plan_uri: str | None = None
    ):
        """``total_files`` None: read from ``plan_uri`` (the job's plan.json) once the job has written it."""
        self._out, self._total, self._interval, self._plan_uri = out, total_files, interval_s, plan_uri
        self._stream = stream or sys.stderr
        self._seen = out.committed_parts()
        self._files = 0
        self._audio_s = 0.0
        self._t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="yamnet-beam-progress", daemon=True)

    def __enter__(self):
        if self._interval > 0 and (self._total or self._plan_uri):
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def poll(self) -> str:
        new = self._out.committed_parts() - self._seen
        for table in self._out.read_parts(new, ["duration_s"]):
            self._files += table.num_rows
            self._audio_s += sum(d for d in table.column("duration_s").to_pylist() if d)
        self._seen |= new
        wall = time.perf_counter() - self._t0
        if self._total is None and self._plan_uri:
            plan = read_json(self._plan_uri)
            self._total = None if plan is None else int(plan["files_todo"])
        total = "?" if self._total is None else self._total
        listing = ", listing inputs" if self._total is None else ""
        return (
            f"yamnet-beam: {self._files}/{total} files done{listing}, {self._audio_s / 3600:.2f} h audio, "
            f"{self._audio_s / wall if wall else 0:.0f}x realtime, {wall:.0f} s"
        )

    def _loop(self):
        while not self._stop.wait(self._interval):
            try:
                print(self.poll(), file=self._stream, flush=True)
            except Exception as e:  # progress must never break a run
                _LOG.debug("progress poll failed: %s", e)
