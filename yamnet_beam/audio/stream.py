"""Streaming decode in a background thread: :func:`open_audio` returns an :class:`AudioStream` of 16 kHz
mono blocks decoded a couple of blocks ahead of the consumer, with a per-file timeout that turns a hung
decoder or a stalled read into a ``timeout`` error instead of a stuck worker.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from yamnet_beam.audio import decoders
from yamnet_beam.audio.errors import AudioDecodeError
from yamnet_beam.audio.resample import RESAMPLE_QUALITIES
from yamnet_beam.audio.source import AudioInfo, Source
from yamnet_beam.uris import display_path

# Background decoding: blocks decoded ahead of the consumer (bounds memory to ~2 blocks), how
# often a thread waiting to queue a block checks that the consumer is still there, and how long
# close() waits for the thread to finish the block it is decoding.
_QUEUE_BLOCKS = 2
_PUT_POLL_S = 0.05
_JOIN_TIMEOUT_S = 10.0


class _Worker:
    """Runs ``open_source()`` and then the source's blocks in a daemon thread, feeding a bounded queue.

    A daemon because a decoder stuck in a read cannot be killed from Python: on a timeout the
    consumer abandons the thread, and it must not keep the process alive at exit. The thread
    alone touches the file and decoder and closes them when it ends, so a thread that wakes up
    after being abandoned releases them then (best effort; one stuck forever keeps its handle).
    """

    def __init__(self, open_source: Callable[[], Source], name: str) -> None:
        self.queue: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=_QUEUE_BLOCKS)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=decode_into, args=(open_source, self), name=name, daemon=True)
        self.thread.start()

    def join(self, timeout: float) -> None:
        """Waits (at most ``timeout``) until the thread has closed the file."""
        self.thread.join(timeout)


def decode_into(open_source: Callable[[], Source], feed: Any, halt: Callable[[], bool] = lambda: False) -> None:
    """Opens a source and queues its messages into ``feed.queue`` until the file ends or fails, or the consumer
    (``feed.stop``) or ``halt()`` says stop; always closes the source. Every failure reaches the consumer."""

    def put(item: tuple[Any, ...]) -> bool:
        """Queue ``item`` unless the consumer has gone; False means stop."""
        while not (feed.stop.is_set() or halt()):
            try:
                feed.queue.put(item, timeout=_PUT_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    source: Source | None = None
    try:
        source = open_source()
        if not put(("open", source)):
            return
        for block in source.blocks():
            if not put(("block", block, source.progress())) or feed.stop.is_set():
                return
        put(("end", source.progress()))
    except BaseException as e:  # everything reaches the consumer, which re-raises it
        put(("error", e, None if source is None else source.progress()))
    finally:
        if source is not None:
            source.close()


class AudioStream:
    """An open audio file yielding 16 kHz mono float32 blocks; use as a context manager.

    Decoding (reading, decoding, downmixing and resampling) runs in a background thread a couple
    of blocks ahead of the consumer; libsndfile and soxr release the GIL, so it overlaps with the
    consumer's work when a core is free. That thread also enforces the per-file ``timeout_s``.

    Attributes:
        uri: the path or URL as given (may hold surrogate escapes; see :func:`display_path`).
        info: source sample rate, channels, format and decoder.
        source_samples: source-rate samples (per channel) of the blocks yielded so far; the file's
            length once :meth:`blocks` is exhausted (or ``max_duration_s`` worth when cut short).
        output_samples: 16 kHz samples yielded so far.
        nonfinite_samples: NaN/Inf values found in the decoded data (e.g. in float WAVs), one per
            sample value, so one bad stereo frame with both channels NaN counts 2. They are
            replaced by 0 before downmixing, so one bad value cannot poison the resampler's
            output around it.
        clipped_samples: finite values beyond +-2**20 (garbage, e.g. from a damaged float WAV),
            clipped to +-2**20 so that downmixing, resampling and the model stay finite; counted
            like ``nonfinite_samples``. Output blocks are therefore always finite.
    """

    def __init__(self, uri: str, *, timeout_s: float | None, worker: Any) -> None:
        self.uri = uri
        self.source_samples = 0
        self.output_samples = 0
        self.nonfinite_samples = 0
        self.clipped_samples = 0
        self._name = display_path(uri)
        self._timeout_s = timeout_s
        self._waited_s = 0.0
        self._worker = worker  # queue, stop and join(): a _Worker, or one file's feed from a shared thread
        self._abandoned = False
        self._started = False
        item = self._get()
        if item[0] != "open":
            self.close()
            self._raise(item)
        self.info: AudioInfo = item[1].info

    @property
    def abandoned(self) -> bool:
        """Whether the decoder timed out: its thread was left behind, possibly stuck in a read."""
        return self._abandoned

    @property
    def duration_s(self) -> float:
        """Seconds decoded so far (the file's duration once :meth:`blocks` is exhausted)."""
        return self.source_samples / self.info.sample_rate

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A stream dropped without close() must not leave its thread waiting to queue a block.
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.stop.set()

    def close(self) -> None:
        """Stop decoding and release the decoder and the file; safe to call twice."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        worker.stop.set()
        if self._abandoned:
            return  # stuck in the decoder: joining could block forever
        with contextlib.suppress(queue.Empty):
            while True:  # free a slot so a thread blocked on put() sees the stop flag at once
                worker.queue.get_nowait()
        worker.join(_JOIN_TIMEOUT_S)

    def blocks(self) -> Iterator[np.ndarray]:
        """Yield float32 mono 16 kHz blocks (the source's blocks at 16 kHz, else 4 s resampled chunks).

        The concatenated blocks do not depend on ``block_seconds``, and equal a whole-array
        ``soxr.resample`` of the downmixed file up to float rounding. Can be iterated once.

        Raises:
            AudioDecodeError: ``corrupt`` if decoding fails part-way (possibly after blocks were
                already yielded), ``io_error`` if reading fails, ``no_audio`` for zero samples,
                ``timeout`` once this file has kept the caller waiting more than ``timeout_s`` in
                total, ``too_long`` after the blocks of the first ``max_duration_s`` seconds.
        """
        if self._started:
            raise RuntimeError("AudioStream.blocks() can only be iterated once")
        self._started = True
        return self._background_blocks()

    # -- internals ---------------------------------------------------------------------------

    def _background_blocks(self) -> Iterator[np.ndarray]:
        try:
            while True:
                item = self._get()
                if item[0] == "block":
                    self._progress(item[2])
                    yield item[1]
                elif item[0] == "end":
                    self._progress(item[1])
                    return
                else:
                    self._raise(item)
        finally:
            self.close()

    def _progress(self, counts: tuple[int, int, int, int] | None) -> None:
        if counts is not None:
            self.source_samples, self.output_samples, self.nonfinite_samples, self.clipped_samples = counts

    def _raise(self, item: tuple[Any, ...]) -> None:
        assert item[0] == "error"
        self._progress(item[2])
        raise item[1]

    def _get(self) -> tuple[Any, ...]:
        """The worker's next message, charging the wait to this file's ``timeout_s`` budget."""
        worker = self._worker
        if worker is None:
            raise RuntimeError("AudioStream is closed")
        if self._timeout_s is None:
            return worker.queue.get()
        t0 = time.monotonic()
        try:
            return worker.queue.get(timeout=max(0.0, self._timeout_s - self._waited_s))
        except queue.Empty:
            self._abandoned = True
            self.close()
            where = f"after {self.duration_s:.1f} s of audio" if hasattr(self, "info") else "while opening"
            raise AudioDecodeError(
                "timeout",
                f"{self._name}: decoding took longer than {self._timeout_s:g} s (the per-file decode "
                f"timeout); stopped {where}",
            ) from None
        finally:
            self._waited_s += time.monotonic() - t0


def check_arguments(
    block_seconds: float, resample_quality: str, timeout_s: float | None, max_duration_s: float | None
) -> None:
    """ValueError for a bad ``block_seconds``, ``resample_quality``, ``timeout_s`` or ``max_duration_s``."""
    if not block_seconds > 0:
        raise ValueError(f"block_seconds must be positive, got {block_seconds}")
    if resample_quality not in RESAMPLE_QUALITIES:
        raise ValueError(f"resample_quality must be one of {sorted(RESAMPLE_QUALITIES)}")
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive or None, got {timeout_s}")
    if max_duration_s is not None and not max_duration_s > 0:
        raise ValueError(f"max_duration_s must be positive or None, got {max_duration_s}")


def open_audio(
    uri: str,
    *,
    block_seconds: float = 10.0,
    resample_quality: str = "HQ",
    timeout_s: float | None = None,
    max_duration_s: float | None = None,
    segment: tuple[int, int | None] | None = None,
) -> AudioStream:
    """Open ``uri`` (local path or any fsspec URL) for streaming decode to 16 kHz mono.

    libsndfile is tried first; if it cannot open the file and PyAV is installed, PyAV decodes
    it. Both read through the same fsspec file object, block by block, in a background thread.

    Args:
        timeout_s: the most time in total this file may keep the caller waiting for the decoder
            (opening included), or None for no limit. On expiry :meth:`AudioStream.blocks`
            (or this function) raises ``timeout`` and the decode thread is abandoned: Python
            cannot kill it, so it is a daemon that closes the file if its read ever returns.
        max_duration_s: decode only the first this many seconds of source audio; if the file is
            longer, :meth:`AudioStream.blocks` yields them and then raises ``too_long``.
        segment: ``(start, stop)`` in 16 kHz samples (``stop`` None: to the end): decode only that
            part of the output signal, seeking in the source. ``start`` must be a multiple of
            :func:`segment_quantum` of the source rate; only seekable libsndfile sources
            (``info.seekable``) can be segmented. Not combined with ``max_duration_s``.

    Raises:
        AudioDecodeError: with a ``kind`` and a reason naming the file (see
            :func:`display_path`); never a bare LibsndfileError or PyAV error.
        ValueError: for a bad ``block_seconds``, ``resample_quality``, ``timeout_s`` or
            ``max_duration_s``.
    """
    check_arguments(block_seconds, resample_quality, timeout_s, max_duration_s)
    if segment is not None and max_duration_s is not None:
        raise ValueError("segment and max_duration_s cannot be combined; plan segments within the limit")

    def open_source() -> Source:
        return decoders.open_source(uri, block_seconds, resample_quality, max_duration_s, segment)

    worker = _Worker(open_source, name=f"yamnet-beam-decode {display_path(uri)}")
    return AudioStream(uri, timeout_s=timeout_s, worker=worker)


def decode_file(uri: str) -> tuple[np.ndarray, AudioInfo, float]:
    """Decode a whole file to 16 kHz mono float32 (for notebooks and tests, not long files).

    Returns the signal, the source :class:`AudioInfo` and the source duration in seconds.
    """
    with open_audio(uri) as stream:
        blocks = list(stream.blocks())
        signal = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
        return signal, stream.info, stream.duration_s
