"""Many files through the model as one queue: CNN batches run across file boundaries, and the front end
runs on a helper thread one span ahead of the CNN.

A :class:`~yamnet_beam.model.batched.FrameStream` serves one signal. A part of short clips through one
stream per clip paid for it per clip: every clip ended on a partial CNN batch (a 10 s clip is 20 frames),
and the CNN waited for the clip's front end. A :class:`MultiFileStream` takes the files one after another
(:meth:`~MultiFileStream.begin` each) and keeps one queue of frames: a file's last frames share a CNN batch
with the next file's first ones, and while the CNN runs on the frames queued so far, the front end (the
log-mel spectrogram: a quarter of the model's work) computes the next span on another core. Results come
out in the order the frames went in, each tagged with its file's key, possibly while a later file is being
pushed; :meth:`~MultiFileStream.drain` returns the rest. Numbers are those of per-frame ``invoke()`` bit for
bit: XNNPACK quantizes activations per row, so which frames share an invoke changes nothing (the fidelity
tests compare with per-frame invoke).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from yamnet_beam.framing import HOP_SAMPLES, WINDOW_SAMPLES, FrameSpan, StreamFramer
from yamnet_beam.model.batched import DEFAULT_BATCH, FrameResults, Pair
from yamnet_beam.model.graph import EMBEDDING_DIM, NUM_CLASSES

# Spans whose front end may run ahead of the CNN: one is enough to keep the helper busy while the CNN runs,
# and bounds memory to one span of patches (<= 41 frames x 24 KB at the default hop) beyond the queue.
_AHEAD = 1
# The helper is worth it while a core is idle for it. Every _DECIDE_S of the caller's time: the front end moves
# to the caller's thread when the caller waited for its input (decoding, on the other core) more than _WAIT_OFF
# of that time, or when the machine left less than _IDLE_OFF of a core idle in two windows running (other
# workers or jobs hold the cores); it moves back when the caller waits less than _WAIT_ON and more than
# _IDLE_ON of a core is idle. Measured on 2 cores: with 1 worker, 10 s clips of 16 kHz WAV wait 0.5-1.4 % of
# the time, of 44.1 kHz stereo FLAC 40-46 % with the helper (whose front end then slows the decoder: 961
# frames/s against 1,037 without it) and 23-30 % without; one worker leaves ~0.6 of a core idle with its
# helper; two workers at once ran 5-10 % faster without their helpers (the helper's own share of a core,
# 0.64-0.75 then against 0.73-0.86 alone, was too close to tell the two apart).
_WAIT_OFF, _WAIT_ON, _IDLE_OFF, _IDLE_ON, _DECIDE_S = 0.15, 0.05, 0.25, 0.5, 0.5
# Frames a per-frame model's span holds at most (its second stage invokes per frame anyway).
_PER_FRAME_SPAN = 64


@dataclass
class _Queued:
    """A run of one file's consecutive frames: the second stage's inputs, or the front end computing them."""

    key: Hashable
    first_frame: int
    count: int
    total_samples: int  # the file's samples pushed when these frames were cut
    inputs: np.ndarray | Future

    def split(self, n: int) -> _Queued:
        """Keeps the first ``n`` frames here; returns the rest."""
        rest = _Queued(self.key, self.first_frame + n, self.count - n, self.total_samples, self.inputs[n:])
        self.count, self.inputs = n, self.inputs[:n]
        return rest


class MultiFileStream:
    """Files' blocks in, in order; :class:`FrameResults` (``key`` set) out, in the same order.

    ``prepare(span)`` turns a span into per-frame inputs (the front end's patches, or the frames
    themselves for a per-frame model); ``run(inputs)`` gives scores and embeddings for up to ``batch`` of
    them. With ``helper``, ``prepare`` runs on a helper thread (LiteRT releases the GIL while it
    invokes), except while the caller reports (:meth:`waited`) that it waits for its input for a good
    share of its time, or while the machine has no core idle. Not thread-safe: one per thread, and
    :meth:`close` (or ``with``) stops the helper.
    """

    def __init__(
        self,
        new_framer: Callable[[], StreamFramer],
        prepare: Callable[[FrameSpan], np.ndarray],
        run: Callable[[np.ndarray], Pair],
        batch: int = DEFAULT_BATCH,
        helper: bool = False,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self._new_framer, self._prepare, self._run, self._batch = new_framer, prepare, run, batch
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="yamnet-beam-frontend") if helper else None
        self._framer: StreamFramer | None = None
        self._key: Hashable = None
        self.use_helper = helper  # the balance below may turn it off and on
        self._waited_s = self._busy_s = 0.0
        self._idle = _IdleCores()
        self._low_windows = 0  # windows running with the helper on and no core idle
        self._inflight: deque[_Queued] = deque()  # front end submitted, in order
        self._ready: deque[_Queued] = deque()  # inputs ready for the second stage, in order
        self._ready_frames = 0

    def __enter__(self) -> MultiFileStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drops whatever is queued and stops the helper thread (waiting for the span it computes)."""
        self.discard()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    # -- the current file ------------------------------------------------------------------------

    def begin(self, key: Hashable) -> None:
        """Starts the next file; its results carry ``key``. The frames of earlier files stay queued."""
        self._framer, self._key = self._new_framer(), key

    @property
    def total_samples(self) -> int:
        """Samples of the current file pushed so far."""
        return self._framer.total_samples if self._framer is not None else 0

    @property
    def finished(self) -> bool:
        """Whether the current file has ended (:meth:`end`, or a push with ``final``)."""
        return self._framer is None or self._framer.finished

    def push(self, block: np.ndarray, final: bool = False) -> list[FrameResults]:
        """Adds the current file's samples (``final``: its last, so it ends here, the last frame zero-padded);
        returns the results now ready, of this file or earlier ones."""
        return self._queue(self._current().push_spans(block, final))

    def cut(self) -> list[FrameResults]:
        """Queues the current file's complete frames without ending it (a segment's end, or before a failure)."""
        return self._queue(self._current().flush_spans())

    def end(self) -> list[FrameResults]:
        """Ends the current file: its remaining frames, the last zero-padded (one frame even for no audio)."""
        return self._queue(self._current().finish_spans())

    def waited(self, seconds: float) -> None:
        """The caller waited ``seconds`` for its input: while that is a good share of its time, the other core
        (decoding) is the bottleneck and the front end runs on the caller's thread instead of the helper."""
        self._waited_s += seconds

    def drain(self) -> list[FrameResults]:
        """Every queued frame's results, the last CNN batch at its own size: call before committing."""
        return self._advance(wait=True)

    def discard(self) -> set[Hashable]:
        """After a failure: drops every queued frame; returns the keys whose frames were dropped."""
        keys = {q.key for q in (*self._inflight, *self._ready)}
        for q in self._inflight:
            if isinstance(q.inputs, Future) and not q.inputs.cancel():
                with contextlib.suppress(Exception):  # running: the helper must be done with the front end
                    q.inputs.result()
        self._inflight.clear()
        self._ready.clear()
        self._ready_frames = 0
        return keys

    # -- internals -------------------------------------------------------------------------------

    def _current(self) -> StreamFramer:
        if self._framer is None:
            raise RuntimeError("begin() a file before pushing its samples")
        return self._framer

    def _queue(self, spans: Iterable[FrameSpan]) -> list[FrameResults]:
        t0 = time.perf_counter()
        framer = self._current()
        for span in spans:  # a span's samples are never written to again: safe to read on the helper
            if self._pool is not None and self.use_helper:
                inputs = self._pool.submit(self._prepare, span)
            else:
                for q in self._inflight:  # one front end, used by one thread at a time
                    if isinstance(q.inputs, Future):
                        q.inputs = q.inputs.result()
                inputs = self._prepare(span)
            self._inflight.append(_Queued(self._key, span.first_frame, span.count, framer.total_samples, inputs))
        try:
            return self._advance(wait=False)
        finally:
            self._busy_s += time.perf_counter() - t0
            self._balance()

    def _balance(self) -> None:
        total = self._waited_s + self._busy_s
        if self._pool is None or total < _DECIDE_S:
            return
        share = self._waited_s / total
        idle = self._idle.since_last()
        if self.use_helper:
            self._low_windows = self._low_windows + 1 if idle is not None and idle < _IDLE_OFF else 0
            if share > _WAIT_OFF or self._low_windows >= 2:
                self.use_helper, self._low_windows = False, 0
        elif share < _WAIT_ON and (idle is None or idle > _IDLE_ON):
            self.use_helper = True
        self._waited_s = self._busy_s = 0.0

    def _advance(self, wait: bool) -> list[FrameResults]:
        """Moves finished front-end work to the ready queue (waiting for all but the newest ``_AHEAD``
        spans, or for all when ``wait``) and runs the second stage over whole batches (all when ``wait``)."""
        while self._inflight:
            head = self._inflight[0]
            if isinstance(head.inputs, Future):
                if not (wait or len(self._inflight) > _AHEAD or head.inputs.done()):
                    break
                head.inputs = head.inputs.result()
            self._ready.append(self._inflight.popleft())
            self._ready_frames += head.count
        n = self._ready_frames if wait else self._ready_frames - self._ready_frames % self._batch
        return self._run_frames(n) if n else []

    def _run_frames(self, n: int) -> list[FrameResults]:
        """The second stage over the first ``n`` ready frames, ``batch`` at a time across files."""
        taken: list[_Queued] = []
        left = n
        while left:
            q = self._ready[0]
            if q.count > left:
                self._ready[0] = q.split(left)
            else:
                self._ready.popleft()
            taken.append(q)
            left -= q.count
        self._ready_frames -= n
        inputs = taken[0].inputs if len(taken) == 1 else np.concatenate([q.inputs for q in taken])
        scores = np.empty((n, NUM_CLASSES), np.float32)
        embeddings = np.empty((n, EMBEDDING_DIM), np.float32)
        try:
            for b0 in range(0, n, self._batch):
                b1 = min(n, b0 + self._batch)
                scores[b0:b1], embeddings[b0:b1] = self._run(inputs[b0:b1])
        except BaseException:  # the frames stay queued, so that discard() names their files
            self._ready.extendleft(reversed(taken))
            self._ready_frames += n
            raise
        runs: list[list[Any]] = []  # [key, first_frame, start row, count, total_samples] per file's run
        at = 0
        for q in taken:
            last = runs[-1] if runs else None
            if last is not None and last[0] == q.key and last[1] + last[3] == q.first_frame:
                last[3] += q.count
                last[4] = q.total_samples
            else:
                runs.append([q.key, q.first_frame, at, q.count, q.total_samples])
            at += q.count
        return [
            FrameResults(first, scores[s : s + c], embeddings[s : s + c], key=key, total_samples=total)
            for key, first, s, c, total in runs
        ]


class _IdleCores:
    """Cores the whole machine left idle since the last call, from ``/proc/stat`` (None where there is none)."""

    def __init__(self) -> None:
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._last = self._read()

    @staticmethod
    def _read() -> tuple[float, int] | None:
        try:
            with open("/proc/stat", "rb") as f:
                fields = f.readline().split()
            return time.monotonic(), int(fields[4]) + int(fields[5])  # idle + iowait, in clock ticks
        except (OSError, IndexError, ValueError):
            return None

    def since_last(self) -> float | None:
        now, last = self._read(), self._last
        self._last = now
        if now is None or last is None or now[0] - last[0] <= 0:
            return None
        return (now[1] - last[1]) / self._tick / (now[0] - last[0])


def _frames(span: FrameSpan) -> np.ndarray:
    return span.frames()


def per_frame_multi_stream(
    predict: Callable[[np.ndarray], Pair], hop_samples: int = HOP_SAMPLES, batch: int = DEFAULT_BATCH
) -> MultiFileStream:
    """A stream over any ``predict(frames)`` (one invoke per frame, or a test's fake), ``batch`` frames a call."""
    return MultiFileStream(
        lambda: StreamFramer(hop_samples, WINDOW_SAMPLES, max(batch, _PER_FRAME_SPAN // batch * batch)),
        _frames,
        predict,
        batch,
    )


def open_multi_stream(model: Any, hop_samples: int = HOP_SAMPLES, batch: int = DEFAULT_BATCH) -> MultiFileStream:
    """``model.multi_stream(hop, batch)`` if it has one (:class:`~yamnet_beam.model.YamnetModel`), else a
    per-frame stream over its ``predict`` (a model with only ``predict``, like the tests' fakes)."""
    multi = getattr(model, "multi_stream", None)
    return multi(hop_samples, batch) if multi is not None else per_frame_multi_stream(model.predict, hop_samples, batch)
