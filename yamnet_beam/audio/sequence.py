"""Many files decoded one after another by one background thread: :func:`open_audio_files`.

:func:`~yamnet_beam.audio.stream.open_audio` starts a decode thread per file. For a collection of short
clips that start-up, and the hand-offs around it, cost as much as decoding a 10 s clip (measured: 1.10 ms
of CPU per 16 kHz clip through a thread of its own, 0.60 ms decoded in place). Here one thread decodes the
files in order, a bounded number of files ahead of the consumer, each into its own queue, so every file
keeps its own :class:`~yamnet_beam.audio.stream.AudioStream`: its errors, counts and per-file timeout.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from yamnet_beam.audio import decoders
from yamnet_beam.audio.errors import AudioDecodeError
from yamnet_beam.audio.source import Source
from yamnet_beam.audio.stream import _PUT_POLL_S, _QUEUE_BLOCKS, AudioStream, check_arguments, decode_into

# Files the thread may have started beyond the one the consumer reads: a clip's decoding then overlaps with
# the consumer's work on the one before, and memory holds at most this many files' queues more.
FILES_AHEAD = 2


class _FileFeed:
    """One file's messages from the shared thread, with the interface AudioStream reads (queue, stop, join)."""

    def __init__(self) -> None:
        # The open message, blocks and the end: a clip of one block fits whole, so the thread moves on.
        self.queue: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=_QUEUE_BLOCKS + 2)
        self.stop = threading.Event()
        self.done = threading.Event()  # the thread has closed this file

    def join(self, timeout: float) -> None:
        self.done.wait(timeout)


class _SequenceThread:
    """Decodes ``opens[first:]`` in order, each into its feed, holding one of ``slots`` per file started.

    A daemon, like a single file's decode thread: one stuck in a read is retired (:attr:`retired`) and
    left behind, and a new one goes on from the next file; a retired thread takes no further file.
    """

    def __init__(
        self, opens: Sequence[Callable[[], Source]], feeds: Sequence[_FileFeed], first: int, slots: int, name: str
    ) -> None:
        self.retired = threading.Event()
        self.slots = threading.Semaphore(slots)
        self._opens, self._feeds = opens, feeds
        self.thread = threading.Thread(target=self._run, args=(first,), name=name, daemon=True)
        self.thread.start()

    def _run(self, first: int) -> None:
        for i in range(first, len(self._opens)):
            while not self.slots.acquire(timeout=_PUT_POLL_S):  # the consumer gives a slot back per file
                if self.retired.is_set():
                    return
            if self.retired.is_set():
                return
            try:
                decode_into(self._opens[i], self._feeds[i], self.retired.is_set)
            finally:
                self._feeds[i].done.set()


def open_audio_files(
    uris: Sequence[str],
    *,
    block_seconds: float = 10.0,
    resample_quality: str = "HQ",
    timeout_s: float | None = None,
    max_duration_s: float | None = None,
    files_ahead: int = FILES_AHEAD,
) -> Iterator[AudioStream | Exception]:
    """Yields each file's open :class:`AudioStream`, in order, or the exception opening it raised.

    Arguments as :func:`~yamnet_beam.audio.stream.open_audio`, per file. One background thread decodes the
    files, up to ``files_ahead`` beyond the one being read. Read (or close) each stream before asking for the
    next: asking closes it. A file that times out leaves its thread behind (stuck, as a single file's would);
    a new thread goes on with the next file. Close the iterator (or exhaust it) to stop decoding.
    """
    check_arguments(block_seconds, resample_quality, timeout_s, max_duration_s)
    if files_ahead < 1:
        raise ValueError(f"files_ahead must be >= 1, got {files_ahead}")
    opens = [
        functools.partial(decoders.open_source, uri, block_seconds, resample_quality, max_duration_s, None)
        for uri in uris
    ]
    feeds = [_FileFeed() for _ in uris]
    name = f"yamnet-beam-decode {len(uris)} files"
    worker = _SequenceThread(opens, feeds, 0, files_ahead, name)
    try:
        for i, uri in enumerate(uris):
            try:
                item: AudioStream | Exception = AudioStream(uri, timeout_s=timeout_s, worker=feeds[i])
            except Exception as e:  # AudioDecodeError, or a bug: the consumer reports it in the file's row
                item = e
            yield item
            if isinstance(item, AudioStream):
                item.close()
                stuck = item.abandoned
            else:
                stuck = isinstance(item, AudioDecodeError) and item.kind == "timeout"  # while opening
            if stuck:  # its thread is stuck in this file: the next files get new feeds and a new thread
                worker.retired.set()
                for feed in feeds[i + 1 :]:
                    feed.stop.set()
                feeds = feeds[: i + 1] + [_FileFeed() for _ in uris[i + 1 :]]
                worker = _SequenceThread(opens, feeds, i + 1, files_ahead, name)
            else:
                worker.slots.release()
    finally:
        worker.retired.set()
        for feed in feeds:
            feed.stop.set()
