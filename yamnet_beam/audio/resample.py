"""Downmixing and resampling to 16 kHz on a fixed grid of chunks, so the 16 kHz signal is a function of
the source alone, not of where decoding started (segments of a long file are bit-identical to a
whole-file decode).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import soxr

from yamnet_beam.framing import SAMPLE_RATE as TARGET_SAMPLE_RATE  # YAMNet's rate, defined once

RESAMPLE_QUALITIES = frozenset({"QQ", "LQ", "MQ", "HQ", "VHQ"})


#: Resampling works on a fixed grid of 4 s output chunks, each resampled on its own with 0.1 s
#: of context on both sides (5 % more resampling, cheap next to the model). The 16 kHz signal is
#: then a function of the source alone, not of how it was read: a segment starting on the grid
#: (see :func:`segment_quantum`) gets bit-identical samples to a whole-file decode. (A streaming
#: resampler started mid-file differs by float rounding, and YAMNet's runtime-quantised
#: activations turn 1e-7 into score jumps of 0.04.)
RESAMPLE_CHUNK = 4 * TARGET_SAMPLE_RATE  # a multiple of 16000: a whole number of source samples at any rate
_CONTEXT_OUT = 1600


def segment_quantum(sample_rate: int) -> int:
    """The step, in 16 kHz samples, on which segments of a file at ``sample_rate`` may start."""
    return 1 if int(sample_rate) == TARGET_SAMPLE_RATE else RESAMPLE_CHUNK


class ChunkResampler:
    """Resamples a source signal fed in blocks of any size, chunk by chunk on the fixed output grid.

    ``first_chunk`` is the grid index where the caller's output starts (a segment); the caller
    feeds source samples from :meth:`input_start` of that chunk on.
    """

    def __init__(self, rate: int, quality: str, first_chunk: int = 0) -> None:
        self.rate = rate
        self.quality = quality
        q = TARGET_SAMPLE_RATE // math.gcd(rate, TARGET_SAMPLE_RATE)
        self.ctx_out = -(-_CONTEXT_OUT // q) * q  # a whole number of source samples too
        self.ctx_src = self.src(self.ctx_out)
        self.chunk = first_chunk
        self.buf = np.zeros(0, np.float32)
        self.buf_start = self.input_start(first_chunk)  # absolute source index of buf[0]

    def src(self, n_out: int) -> int:
        """Source samples for ``n_out`` output samples (exact on the grid)."""
        return n_out * self.rate // TARGET_SAMPLE_RATE

    def input_start(self, chunk: int) -> int:
        """Source sample where input must start for output chunk ``chunk`` (its left context)."""
        return max(0, self.src(chunk * RESAMPLE_CHUNK) - self.ctx_src)

    def push(self, mono: np.ndarray) -> Iterator[np.ndarray]:
        self.buf = np.concatenate([self.buf, mono]) if len(self.buf) else np.array(mono, np.float32)
        while self.buf_start + len(self.buf) >= self.src((self.chunk + 1) * RESAMPLE_CHUNK) + self.ctx_src:
            yield self._emit(last=False)

    def finish(self) -> Iterator[np.ndarray]:
        end = self.buf_start + len(self.buf)
        while self.src(self.chunk * RESAMPLE_CHUNK) < end:
            last = self.src((self.chunk + 1) * RESAMPLE_CHUNK) >= end
            out = self._emit(last=last)
            if len(out):
                yield out
            if last:
                return

    def _emit(self, last: bool) -> np.ndarray:
        start_out = self.chunk * RESAMPLE_CHUNK
        a = self.input_start(self.chunk)
        e = min(self.buf_start + len(self.buf), self.src(start_out + RESAMPLE_CHUNK) + self.ctx_src)
        x = self.buf[a - self.buf_start : e - self.buf_start]
        y = soxr.resample(x, self.rate, TARGET_SAMPLE_RATE, quality=self.quality)
        off = start_out - a * TARGET_SAMPLE_RATE // self.rate
        out = y[off:] if last else y[off : off + RESAMPLE_CHUNK]
        self.chunk += 1
        keep = self.input_start(self.chunk)
        if keep > self.buf_start:
            self.buf = self.buf[keep - self.buf_start :]
            self.buf_start = keep
        return np.ascontiguousarray(out, dtype=np.float32)


def downmix(x: np.ndarray) -> np.ndarray:
    """Average the channels of an ``(n, channels)`` float32 block into a new ``(n,)`` array.

    Pairwise float32 adds instead of ``x.mean(axis=1)``: the latter is ~16x slower (as slow as
    FLAC decoding) and goes through float64. Elementwise adds (unlike a BLAS matmul) give each
    sample the same rounding whatever the block boundaries, so streaming stays bit-identical
    to whole-file processing. 1-D input is already mono and is returned as is.
    """
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise ValueError(f"expected a 1-D or (n, channels) array, got shape {x.shape}")
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    channels = x.shape[1]
    if channels == 1:
        return x[:, 0].copy()
    out = np.add(x[:, 0], x[:, 1])
    for c in range(2, channels):
        np.add(out, x[:, c], out=out)
    out *= np.float32(1.0 / channels)
    return out
