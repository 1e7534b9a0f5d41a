"""YAMNet framing: 0.975 s windows every 0.48 s over 16 kHz mono audio.

Kept exactly as YAMNet frames a waveform so that a row ``frame = i`` always means the audio
``[i * hop, i * hop + window)`` samples, whichever way the audio reached the model (whole file,
streamed blocks, or shards). Pure numpy, no Beam.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 15600  # 0.975 s
HOP_SAMPLES = 7680  # 0.48 s
WINDOW_SECONDS = WINDOW_SAMPLES / SAMPLE_RATE


def hop_samples_from_seconds(hop_seconds: float) -> int:
    """Converts a hop in seconds to whole 16 kHz samples; a hop beyond the window would skip audio."""
    hop = int(round(hop_seconds * SAMPLE_RATE))
    if not 0 < hop <= WINDOW_SAMPLES:
        raise ValueError(
            f"hop_seconds={hop_seconds} gives a hop of {hop} samples; it must be > 0 and at most the "
            f"window ({WINDOW_SECONDS} s), or frames would skip audio."
        )
    return hop


def num_frames(n_samples: int, hop: int = HOP_SAMPLES, window: int = WINDOW_SAMPLES) -> int:
    """``1 + ceil(max(0, n - window) / hop)``, as YAMNet counts: audio shorter than a window gets one padded frame."""
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    return 1 + math.ceil(max(0, n_samples - window) / hop)


def frame_times(
    first_frame: int, count: int, hop: int = HOP_SAMPLES, window: int = WINDOW_SAMPLES
) -> tuple[np.ndarray, np.ndarray]:
    """Start and end seconds of frames ``first_frame .. first_frame+count-1``, from integer sample offsets."""
    offsets = (np.arange(first_frame, first_frame + count, dtype=np.int64)) * hop
    start = offsets / SAMPLE_RATE
    return start, (offsets + window) / SAMPLE_RATE


def valid_samples(
    first_frame: int, count: int, n_samples: int, hop: int = HOP_SAMPLES, window: int = WINDOW_SAMPLES
) -> np.ndarray:
    """How many real (non-padding) samples each frame holds; < window only for the padded tail."""
    offsets = np.arange(first_frame, first_frame + count, dtype=np.int64) * hop
    return np.clip(n_samples - offsets, 0, window).astype(np.int32)


def frame_signal(x: np.ndarray, hop: int = HOP_SAMPLES, window: int = WINDOW_SAMPLES) -> np.ndarray:
    """All frames of a whole 1-D signal as a ``[F, window]`` float32 array (last frame zero-padded)."""
    x = np.asarray(x, dtype=np.float32)
    n = num_frames(len(x), hop, window)
    padded = np.zeros((n - 1) * hop + window, dtype=np.float32)
    padded[: len(x)] = x
    return np.lib.stride_tricks.sliding_window_view(padded, window)[::hop].copy()


@dataclass
class FrameBatch:
    """Consecutive frames of one signal: ``frames[k]`` is frame number ``first_frame + k``."""

    first_frame: int
    frames: np.ndarray  # float32 [count, window]

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class FrameSpan:
    """Consecutive frames of one signal as the samples they cover, not yet cut into windows.

    Frame ``first_frame + k`` is ``samples[k * hop : k * hop + window]``, so a model that computes
    STFT rows once for the whole span can share them between overlapping frames.
    """

    first_frame: int
    count: int
    samples: np.ndarray  # float32 [(count - 1) * hop + window], a view of the framer's buffer
    hop: int
    window: int

    def frames(self) -> np.ndarray:
        """The frames as a ``[count, window]`` float32 array (a copy: the windows overlap)."""
        view = np.lib.stride_tricks.sliding_window_view(self.samples, self.window)[:: self.hop]
        return np.ascontiguousarray(view, dtype=np.float32)


class StreamFramer:
    """Frames a signal that arrives in blocks of any size, holding at most one window plus one block.

    Yields the same frames as :func:`frame_signal` on the concatenated signal, in batches of at most
    ``max_batch`` frames, so that memory stays flat however long the recording is: as
    :class:`FrameBatch` (:meth:`push`, :meth:`finish`) or as :class:`FrameSpan` (:meth:`push_spans`,
    :meth:`finish_spans`; valid until the next call).
    """

    def __init__(self, hop: int = HOP_SAMPLES, window: int = WINDOW_SAMPLES, max_batch: int = 256, multiple: int = 1):
        if not 0 < hop <= window:
            raise ValueError(f"hop must be in (0, {window}], got {hop}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if multiple < 1 or max_batch % multiple:
            raise ValueError(f"multiple must be >= 1 and divide max_batch ({max_batch}), got {multiple}")
        # A push with ``whole`` yields whole multiples of ``multiple`` frames (the CNN batch), holding back the
        # rest (at most multiple - 1 frames) for the next block; finishing or flushing yields them. Batches then
        # stay whole across block boundaries: a 10 s block at 0.48 s is 21 frames, else ending on a batch of 1.
        self.hop, self.window, self.max_batch, self.multiple = hop, window, max_batch, multiple
        self._buf = np.zeros(0, dtype=np.float32)  # samples from offset self._buf_start on
        self._buf_start = 0
        self._next_frame = 0
        self.total_samples = 0
        self.finished = False

    def _emit(self, final: bool, whole: bool = False) -> Iterator[FrameSpan]:
        """Yields the spans now complete; ``whole``: only whole multiples of ``multiple`` frames."""
        while True:
            start = self._next_frame * self.hop - self._buf_start
            available = len(self._buf) - start
            if final:
                # Everything still unframed: frames until the count formula says stop.
                remaining = num_frames(self.total_samples, self.hop, self.window) - self._next_frame
            else:
                remaining = 0 if available < self.window else 1 + (available - self.window) // self.hop
            count = min(remaining, self.max_batch)
            if whole:
                count -= count % self.multiple
            if count <= 0:
                break
            need = start + (count - 1) * self.hop + self.window
            if need > len(self._buf):  # only when finishing: the last frames are zero-padded
                self._buf = np.concatenate([self._buf, np.zeros(need - len(self._buf), dtype=np.float32)])
            yield FrameSpan(self._next_frame, count, self._buf[start:need], self.hop, self.window)
            self._next_frame += count
        # Drop samples no later frame needs.
        keep_from = self._next_frame * self.hop - self._buf_start
        if keep_from > 0:
            self._buf = self._buf[keep_from:].copy()
            self._buf_start += keep_from

    def push_spans(self, block: np.ndarray, final: bool = False, whole: bool = False) -> Iterator[FrameSpan]:
        """Adds samples and yields every span of frames that is now complete.

        ``final``: ``block`` is the signal's last, so this also finishes (as :meth:`finish_spans`). A short
        file then takes one span, not the frames its block completes plus a padded remainder apart (which
        would cost a second front-end invoke, its shared rows computed twice, and a partial CNN batch).
        ``whole``: yield only whole multiples of ``multiple`` frames; :meth:`flush_spans` or finishing
        yields the rest.
        """
        if self.finished:
            raise RuntimeError("push after finish: start a new StreamFramer for the next signal")
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        self.total_samples += len(block)
        if len(self._buf):
            self._buf = np.concatenate([self._buf, block])
        else:
            # Final: nothing is kept after this call, and the zero-padded tail is a new array anyway.
            self._buf = block if final else block.copy()
        self.finished = final
        yield from self._emit(final=final, whole=whole and not final)

    def flush_spans(self) -> Iterator[FrameSpan]:
        """Yields the complete frames a push held back (the end of a segment that is not the file's end)."""
        if self.finished:
            return
        yield from self._emit(final=False)

    def finish_spans(self) -> Iterator[FrameSpan]:
        """Yields the remaining spans, the last frame zero-padded (one frame even for empty input)."""
        self.finished = True
        yield from self._emit(final=True)

    def push(self, block: np.ndarray) -> Iterator[FrameBatch]:
        """Adds samples and yields every frame that is now complete."""
        for span in self.push_spans(block):
            yield FrameBatch(span.first_frame, span.frames())

    def finish(self) -> Iterator[FrameBatch]:
        """Yields the remaining frames, the last one zero-padded (one frame even for empty input)."""
        for span in self.finish_spans():
            yield FrameBatch(span.first_frame, span.frames())

    @property
    def frames_emitted(self) -> int:
        return self._next_frame


def frame_blocks(
    blocks: Iterable[np.ndarray], hop: int = HOP_SAMPLES, window: int = WINDOW_SAMPLES, max_batch: int = 256
) -> Iterator[FrameBatch]:
    """Convenience generator: frames an iterable of blocks with :class:`StreamFramer`."""
    framer = StreamFramer(hop, window, max_batch)
    for block in blocks:
        yield from framer.push(block)
    yield from framer.finish()


def segment_bounds(
    n_samples: int, shard_samples: int, hop: int = HOP_SAMPLES, quantum: int = 1, window: int = WINDOW_SAMPLES
) -> list[tuple[int, int | None, int]]:
    """Splits a long signal into segments whose frames together are exactly the whole signal's frames.

    Each segment is ``(start, stop, first_frame)`` in 16 kHz samples: it holds the frames starting
    in ``[start, start + L)``, where ``L`` is the segment length rounded to a multiple of both the
    hop (so frame starts line up) and ``quantum`` (so the source can be cut on a whole sample), and
    reads ``window - hop`` samples beyond it for the last of those frames. The last segment has
    ``stop=None``: it reads to the end of the file and pads the final frame, as a whole-file pass
    does, so an ``n_samples`` that is only an estimate (from a header) cannot lose audio.
    """
    step = math.lcm(hop, quantum)
    length = max(step, shard_samples // step * step)
    bounds = []
    start = 0
    while start + length + window - hop < n_samples:
        bounds.append((start, start + length + window - hop, start // hop))
        start += length
    bounds.append((start, None, start // hop))
    return bounds
