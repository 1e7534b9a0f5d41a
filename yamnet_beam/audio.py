"""Streaming audio decoding to the 16 kHz mono float32 signal YAMNet expects.

Files are read through ``fsspec`` in blocks, so hour-long recordings never sit in memory whole:
each block is decoded, downmixed and resampled (``soxr``, on a fixed grid of chunks, close to a
whole-array ``soxr.resample``) before the next is read. libsndfile (``soundfile``) is tried
first because it is the fastest decoder for WAV/FLAC/Ogg/Opus/MP3; anything it cannot open
(M4A/AAC, WMA, WebM, ...) falls back to PyAV, which is used only to decode, since its own
resampler is slow. Every failure becomes an :class:`AudioDecodeError` whose ``kind`` is one of
:data:`ERROR_KINDS`, so a pipeline can record it as a row instead of crashing.

Decoding runs in a background thread a couple of blocks ahead of the consumer: libsndfile and
soxr release the GIL, so it overlaps with the consumer's work when a core is free (LiteRT's
``invoke`` holds the GIL, so the gain is partial), and it lets a per-file ``timeout_s`` turn a
decoder that hangs (a stalled network read, a pathological file) into a ``timeout`` error
instead of a stuck worker. A *segment* of a long file can be decoded on its own (seeking), so
long recordings can be spread over workers.

No Apache Beam import here: the module is meant to be usable from a notebook.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import fsspec
import numpy as np
import soundfile
import soxr

from yamnet_beam.framing import SAMPLE_RATE as TARGET_SAMPLE_RATE  # YAMNet's rate, defined once

__all__ = [
    "AUDIO_EXTENSIONS",
    "ERROR_KINDS",
    "TARGET_SAMPLE_RATE",
    "AudioDecodeError",
    "AudioInfo",
    "AudioStream",
    "decode_file",
    "display_path",
    "downmix",
    "open_audio",
]


#: Lower-case extensions (with the dot) of files libsndfile or PyAV can read; used to pick
#: audio files out of a directory listing.
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {
        # libsndfile
        ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
        ".au", ".snd", ".caf", ".w64", ".rf64", ".voc", ".sd2", ".ircam", ".sf", ".nist",
        ".sph", ".paf", ".svx", ".8svx", ".htk", ".avr", ".mat", ".pvf", ".xi", ".wve",
        # PyAV (FFmpeg) only
        ".m4a", ".m4b", ".aac", ".mp4", ".mov", ".3gp", ".wma", ".asf", ".webm", ".mka",
        ".mkv", ".amr", ".ac3", ".eac3", ".dts", ".mp2", ".mpc", ".ape", ".wv", ".tta",
        ".spx", ".ra", ".gsm",
    }
)  # fmt: skip

#: Values of :attr:`AudioDecodeError.kind`.
ERROR_KINDS: frozenset[str] = frozenset(
    {"empty_file", "unsupported_format", "corrupt", "io_error", "no_audio", "timeout", "too_long"}
)

_RESAMPLE_QUALITIES = frozenset({"QQ", "LQ", "MQ", "HQ", "VHQ"})
_AV_HINT = 'install PyAV for more formats: pip install "yamnet-beam[av]"'
# libsndfile's "cannot identify this file" errors. Code 7 ("File does not exist or is not a
# regular file") is what it says for unrecognisable bytes opened by path, e.g. random data
# named .mp3; we only open file objects (code 1) but map both the same way.
_SF_UNRECOGNISED_CODES = frozenset({1, 7})
# Background decoding: blocks decoded ahead of the consumer (bounds memory to ~2 blocks), how
# often a thread waiting to queue a block checks that the consumer is still there, and how long
# close() waits for the thread to finish the block it is decoding.
_QUEUE_BLOCKS = 2
_PUT_POLL_S = 0.05
_JOIN_TIMEOUT_S = 10.0
# Finite samples beyond this are clipped (audio is nominally within [-1, 1]): the model still gives
# finite scores at 1e9 but NaN at 2**63, and sums of channels and resampler gains stay finite.
_MAX_ABS_SAMPLE = np.float32(2.0**20)
# libsndfile seeks sample-exactly in PCM-like data; lossy decoders (MP3, Vorbis, Opus) may differ after
# a seek (measured: a 44.1 kHz MP3 by ~1e-7, and VBR MP3 headers may misstate the length).
_EXACT_SEEK_SUBTYPES = ("PCM_", "FLOAT", "DOUBLE", "ULAW", "ALAW")


class AudioDecodeError(Exception):
    """A file could not be decoded; ``kind`` says why in a form fit for an errors table.

    kinds: ``empty_file`` (0 bytes), ``unsupported_format`` (no available decoder can open it),
    ``corrupt`` (opened, or recognised, but its header or data is damaged), ``io_error``
    (missing file, permission denied, network), ``no_audio`` (decodes to zero samples),
    ``timeout`` (decoding exceeded the per-file time limit) and ``too_long`` (longer than
    ``max_duration_s``; raised after the blocks of the first ``max_duration_s`` seconds).
    """

    def __init__(self, kind: str, message: str) -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown AudioDecodeError kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the error picklable (Beam ships exceptions between workers).
        return (type(self), (self.kind, self.message))


@dataclass(frozen=True)
class AudioInfo:
    """What the source file is, before downmixing and resampling."""

    sample_rate: int
    channels: int
    format: str  # "WAV/PCM_16", "FLAC/PCM_24", "OGG/OPUS", "mov,mp4,m4a,3gp,3g2,mj2/aac", ...
    decoder: str  # "soundfile" or "pyav"
    frames: int | None = None  # source samples per channel as the header says (None: unknown)
    # Whether a segment can be decoded on its own, bit-identical to a whole-file decode, and ``frames``
    # is exact: libsndfile on PCM-like data (WAV, AIFF, FLAC, ...), not lossy codecs.
    seekable: bool = False


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


class _ChunkResampler:
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


def display_path(path: str) -> str:
    """``path`` as valid UTF-8 text for tables and messages.

    On Linux a file name is bytes; Python hands non-UTF-8 names over as ``str`` with surrogate
    escapes (``b"caf\\xe9.wav"`` -> ``"caf\\udce9.wav"``), which opens fine but cannot be written
    to Parquet or printed. Such bytes are shown as ``\\xe9``; valid names are returned unchanged.
    """
    try:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    except UnicodeError:  # a lone surrogate that no file system name produced
        return path.encode("utf-8", "backslashreplace").decode("utf-8")


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


def _import_av() -> ModuleType | None:
    try:
        import av
    except ImportError:
        return None
    return av


def _sf_reason(e: soundfile.LibsndfileError) -> str:
    if e.code in _SF_UNRECOGNISED_CODES:
        return "format not recognised"
    return (e.error_string or str(e)).removeprefix("Error : ").rstrip(".")


def _av_reason(e: BaseException) -> str:
    return str(getattr(e, "strerror", None) or e).rstrip(".")


# PyAV sample formats -> scale that maps the integer range onto [-1, 1) like libsndfile does.
_INT_SCALE = {
    np.dtype(np.uint8): 1.0 / 128,
    np.dtype(np.int16): 1.0 / 32768,
    np.dtype(np.int32): 1.0 / 2**31,
    np.dtype(np.int64): 1.0 / 2**63,
}


def _frame_to_float(frame: Any) -> np.ndarray:
    """A PyAV ``AudioFrame`` as an ``(n, channels)`` float32 array (possibly a view)."""
    arr = frame.to_ndarray()
    channels = frame.layout.nb_channels
    # Planar frames come as (channels, n): the transpose is a free view with contiguous
    # columns. Packed frames come as (1, n * channels), interleaved.
    x = arr.T if frame.format.is_planar else arr.reshape(-1, channels)
    if x.dtype == np.float32:
        return x
    if x.dtype == np.float64:
        return x.astype(np.float32)
    scale = _INT_SCALE.get(x.dtype)
    if scale is None:
        raise AudioDecodeError("unsupported_format", f"unsupported sample format {frame.format.name}")
    y = x.astype(np.float32)
    if x.dtype == np.uint8:
        y -= np.float32(128)
    y *= np.float32(scale)
    return y


class _ReadTrap:
    """A file object that remembers the first exception its reads raised, and then reads as EOF.

    libsndfile reads through cffi callbacks, and cffi swallows an exception raised in a
    callback: a read that fails part-way (a network error, a permission change) would look
    like the end of the file, and a truncated file would pass as complete. The decoder checks
    :attr:`error` after every call instead. PyAV gets the same wrapper, for the same guarantee.
    """

    def __init__(self, f: Any) -> None:
        self._f = f
        self.error: BaseException | None = None

    def read(self, n: int = -1) -> bytes:
        if self.error is None:
            try:
                return self._f.read(n)
            except Exception as e:
                self.error = e
        return b""

    def readinto(self, buf: Any) -> int:
        if self.error is None:
            try:
                if hasattr(self._f, "readinto"):
                    return self._f.readinto(buf)
                data = self._f.read(len(buf))
                memoryview(buf).cast("B")[: len(data)] = data
                return len(data)
            except Exception as e:
                self.error = e
        return 0

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._f.close()

    def check(self, name: str, when: str) -> None:
        """Raise ``io_error`` if a read has failed."""
        if self.error is not None:
            raise AudioDecodeError("io_error", f"{name}: read failed {when}: {_io_reason(self.error)}") from self.error


class _Source:
    """The decoder proper: owns the file object and libsndfile/PyAV handle, yields 16 kHz blocks.

    Everything it touches (file, decoder, resampler) is used by one thread only: the background
    decode thread.
    """

    def __init__(
        self,
        uri: str,
        fileobj: _ReadTrap,
        info: AudioInfo,
        *,
        block_seconds: float,
        resample_quality: str,
        max_duration_s: float | None = None,
        segment: tuple[int, int | None] | None = None,
        sf_file: soundfile.SoundFile | None = None,
        av_container: Any = None,
        av_frames: Iterator[Any] | None = None,
    ) -> None:
        self.uri = uri
        self.name = display_path(uri)
        self.info = info
        self.source_samples = 0
        self.output_samples = 0
        self.nonfinite_samples = 0
        self.clipped_samples = 0
        self._file = fileobj
        self._sf = sf_file
        self._container = av_container
        self._av_frames = av_frames
        self._block = max(1, round(block_seconds * info.sample_rate))
        self._quality = resample_quality
        self._max_duration_s = max_duration_s
        self._limit = None if max_duration_s is None else math.floor(max_duration_s * info.sample_rate)
        self._too_long = False
        self._segment = segment
        self._read_limit: int | None = None  # source samples to read in total (segments only)

    @property
    def duration_s(self) -> float:
        return self.source_samples / self.info.sample_rate

    def progress(self) -> tuple[int, int, int, int]:
        return (self.source_samples, self.output_samples, self.nonfinite_samples, self.clipped_samples)

    def close(self) -> None:
        for obj in (self._sf, self._container, self._file):
            if obj is not None:
                # Closing must never mask the error that made us close.
                with contextlib.suppress(Exception):
                    obj.close()
        self._sf = self._container = self._file = None

    def blocks(self) -> Iterator[np.ndarray]:
        if self._segment is not None:
            return self._segment_blocks()
        return self._resampled(self._limited(self._guarded(self._source_blocks())))

    def _segment_blocks(self) -> Iterator[np.ndarray]:
        """16 kHz samples ``[start, stop)`` of the file, bit-identical to those of a whole-file decode.

        ``start`` is on the resampling grid, so the chunks resampled here are the very chunks a
        whole-file decode resamples, from the same source samples; ``stop=None`` reads to the end.
        """
        start, stop = self._segment
        rate = self.info.sample_rate
        q = segment_quantum(rate)
        if start % q:
            raise ValueError(f"a segment must start on a multiple of {q} at {rate} Hz, got {start}")
        resampler = None if rate == TARGET_SAMPLE_RATE else _ChunkResampler(rate, self._quality, start // q)
        if resampler is None:
            first_src, seg_src_start = start, start
        else:
            first_src, seg_src_start = resampler.input_start(start // q), resampler.src(start)
        self._sf.seek(first_src)
        if stop is not None:
            if resampler is None:
                self._read_limit = stop - start
            else:  # the source up to the end of stop's chunk, plus that chunk's right context
                self._read_limit = resampler.src(-(-stop // q) * q) + resampler.ctx_src - first_src
        want = None if stop is None else stop - start
        position = first_src

        def trimmed(outs: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
            nonlocal want
            for out in outs:
                if want is not None:
                    out, want = out[:want], want - min(want, len(out))
                if len(out):
                    self.output_samples += len(out)
                    yield out

        for mono in self._guarded(self._source_blocks()):
            lo, position = position, position + len(mono)
            self.source_samples += max(0, position - max(lo, seg_src_start))
            yield from trimmed([mono] if resampler is None else resampler.push(mono))
            if want == 0:
                return
        if resampler is not None:
            yield from trimmed(resampler.finish())
        if self.source_samples == 0:
            raise AudioDecodeError("no_audio", f"{self.name}: no audio samples at {start / TARGET_SAMPLE_RATE:.2f} s")

    def _resampled(self, mono_blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        rate = self.info.sample_rate
        resampler = None if rate == TARGET_SAMPLE_RATE else _ChunkResampler(rate, self._quality)
        for mono in mono_blocks:
            for out in [mono] if resampler is None else resampler.push(mono):
                if out.size:
                    self.output_samples += out.size
                    yield out
        if self.source_samples == 0 and not self._too_long:
            raise AudioDecodeError("no_audio", f"{self.name}: file contains no audio samples")
        if resampler is not None and self.source_samples:
            for out in resampler.finish():
                self.output_samples += out.size
                yield out
        if self._too_long:
            raise AudioDecodeError(
                "too_long",
                f"{self.name}: longer than --max_duration_s={self._max_duration_s:g}; "
                f"the first {self.duration_s:.1f} s were processed",
            )

    def _limited(self, mono_blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """Count source samples and stop at ``max_duration_s``, noting whether audio remained."""
        limit = self._limit
        for mono in mono_blocks:
            if limit is not None and self.source_samples + len(mono) > limit:
                keep = limit - self.source_samples
                if keep > 0:
                    self.source_samples += keep
                    yield mono[:keep]
                self._too_long = True
                return
            self.source_samples += len(mono)
            yield mono

    def _guarded(self, source: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """Translate decoder errors raised mid-stream into AudioDecodeError.

        A failed read is the cause whatever the decoder made of it (an error, or a clean EOF),
        so it is checked first, after every block.
        """
        while True:
            try:
                block = next(source)
            except StopIteration:
                self._check_read()
                return
            except AudioDecodeError:
                self._check_read()
                raise
            except soundfile.LibsndfileError as e:
                self._check_read()
                raise self._corrupt(_sf_reason(e)) from e
            except Exception as e:
                self._check_read()
                if _is_av_error(e):
                    raise self._corrupt(_av_reason(e)) from e
                if isinstance(e, OSError):  # the file object failed: network, permissions
                    raise AudioDecodeError(
                        "io_error",
                        f"{self.name}: read failed after {self.duration_s:.1f} s: {_io_reason(e)}",
                    ) from e
                raise
            self._check_read()
            yield block

    def _check_read(self) -> None:
        if self._file is not None:
            self._file.check(self.name, f"after {self.duration_s:.1f} s")

    def _corrupt(self, reason: str) -> AudioDecodeError:
        return AudioDecodeError(
            "corrupt",
            f"{self.name}: decode failed after {self.duration_s:.1f} s: {reason}",
        )

    def _sanitise(self, x: np.ndarray) -> np.ndarray:
        """Zero NaN/Inf values and clip absurdly large ones (in place when possible), counting each.

        Without the clip, finite but huge float samples (a damaged float WAV holds values up to
        3e38) overflow to Inf in the downmix or the resampler and reach the model.
        """
        # Cheap screen: a sum of squares (one BLAS pass) no larger than the bound squared means no
        # value is NaN/Inf or beyond the bound; only otherwise count and fix.
        flat = x.reshape(-1)
        with np.errstate(over="ignore", invalid="ignore"):
            total = np.dot(flat, flat)
            if np.isfinite(total) and total <= _MAX_ABS_SAMPLE * _MAX_ABS_SAMPLE:
                return x
        finite = np.isfinite(x)
        bad = x.size - int(np.count_nonzero(finite))
        if not x.flags.writeable:
            x = x.copy()
        if bad:
            self.nonfinite_samples += bad
            np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        clipped = int(np.count_nonzero(np.abs(x) > _MAX_ABS_SAMPLE))
        if clipped:
            self.clipped_samples += clipped
            np.clip(x, -_MAX_ABS_SAMPLE, _MAX_ABS_SAMPLE, out=x)
        return x

    def _source_blocks(self) -> Iterator[np.ndarray]:
        """Downmixed (not yet resampled) mono blocks at the source rate."""
        if self._sf is not None:
            yield from self._sf_blocks()
        else:
            yield from self._av_blocks()

    def _sf_blocks(self) -> Iterator[np.ndarray]:
        sf = self._sf
        assert sf is not None
        buf = np.empty((self._block, sf.channels), dtype=np.float32)
        left = self._read_limit
        while left is None or left > 0:
            n = self._block if left is None else min(self._block, left)
            x = sf.read(n, dtype="float32", always_2d=True, out=buf[:n])
            if len(x) == 0:
                return
            if left is not None:
                left -= len(x)
            yield downmix(self._sanitise(x))  # always a fresh array, so reusing buf is safe

    def _av_blocks(self) -> Iterator[np.ndarray]:
        pending: list[np.ndarray] = []
        have = 0
        assert self._av_frames is not None
        for frame in self._av_frames:
            if frame.sample_rate != self.info.sample_rate:
                raise self._corrupt(
                    f"sample rate changed mid-stream from {self.info.sample_rate} to {frame.sample_rate} Hz"
                )
            x = _frame_to_float(frame)
            if len(x) == 0:
                continue
            mono = downmix(self._sanitise(x))
            pending.append(mono)
            have += len(mono)
            while have >= self._block:
                joined = np.concatenate(pending)
                yield joined[: self._block]
                rest = joined[self._block :]
                pending = [rest] if len(rest) else []
                have = len(rest)
        if have:
            yield np.concatenate(pending)


class _Worker:
    """Runs ``open_source()`` and then the source's blocks in a daemon thread, feeding a bounded queue.

    A daemon because a decoder stuck in a read cannot be killed from Python: on a timeout the
    consumer abandons the thread, and it must not keep the process alive at exit. The thread
    alone touches the file and decoder and closes them when it ends, so a thread that wakes up
    after being abandoned releases them then (best effort; one stuck forever keeps its handle).
    """

    def __init__(self, open_source: Callable[[], _Source], name: str) -> None:
        self.queue: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=_QUEUE_BLOCKS)
        self.stop = threading.Event()
        self._open_source = open_source
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _put(self, item: tuple[Any, ...]) -> bool:
        """Queue ``item`` unless the consumer has gone; False means stop."""
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=_PUT_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        source: _Source | None = None
        try:
            source = self._open_source()
            if not self._put(("open", source)):
                return
            for block in source.blocks():
                if not self._put(("block", block, source.progress())) or self.stop.is_set():
                    return
            self._put(("end", source.progress()))
        except BaseException as e:  # everything reaches the consumer, which re-raises it
            self._put(("error", e, None if source is None else source.progress()))
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

    def __init__(self, uri: str, *, timeout_s: float | None, worker: _Worker) -> None:
        self.uri = uri
        self.source_samples = 0
        self.output_samples = 0
        self.nonfinite_samples = 0
        self.clipped_samples = 0
        self._name = display_path(uri)
        self._timeout_s = timeout_s
        self._waited_s = 0.0
        self._worker: _Worker | None = worker
        self._abandoned = False
        self._started = False
        item = self._get()
        if item[0] != "open":
            self.close()
            self._raise(item)
        self.info: AudioInfo = item[1].info

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
        worker.thread.join(_JOIN_TIMEOUT_S)

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


def _is_av_error(e: BaseException) -> bool:
    av = _import_av()
    return av is not None and isinstance(e, av.FFmpegError)


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
    if not block_seconds > 0:
        raise ValueError(f"block_seconds must be positive, got {block_seconds}")
    if resample_quality not in _RESAMPLE_QUALITIES:
        raise ValueError(f"resample_quality must be one of {sorted(_RESAMPLE_QUALITIES)}")
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive or None, got {timeout_s}")
    if max_duration_s is not None and not max_duration_s > 0:
        raise ValueError(f"max_duration_s must be positive or None, got {max_duration_s}")

    if segment is not None and max_duration_s is not None:
        raise ValueError("segment and max_duration_s cannot be combined; plan segments within the limit")

    def open_source() -> _Source:
        return _open_source(uri, block_seconds, resample_quality, max_duration_s, segment)

    worker = _Worker(open_source, name=f"yamnet-beam-decode {display_path(uri)}")
    return AudioStream(uri, timeout_s=timeout_s, worker=worker)


def _open_source(
    uri: str, block_seconds: float, quality: str, max_duration_s: float | None, segment: tuple[int, int | None] | None
) -> _Source:
    name = display_path(uri)
    try:
        fileobj = _ReadTrap(_open_file(uri))
    except Exception as e:  # FileNotFoundError, PermissionError, network and auth errors
        raise AudioDecodeError("io_error", f"{name}: cannot open: {_io_reason(e)}") from e
    make_source = functools.partial(
        _Source,
        uri,
        fileobj,
        block_seconds=block_seconds,
        resample_quality=quality,
        max_duration_s=max_duration_s,
        segment=segment,
    )
    try:
        source = _open_decoder(uri, fileobj, make_source)
    except BaseException:
        fileobj.close()
        raise
    if segment is not None and not source.info.seekable:
        source.close()
        raise ValueError(f"{name}: {source.info.format} via {source.info.decoder} is not seekable")
    return source


def _open_file(uri: str) -> Any:
    # A plain path goes straight to the local file system: fsspec.open() would read "::" in a
    # file name as URL chaining.
    if "://" not in uri:
        return fsspec.filesystem("file").open(uri, "rb")
    return fsspec.open(uri, "rb").open()


def _io_reason(e: BaseException) -> str:
    """A short reason for an I/O failure; the common ones in plain words, others with their type."""
    if isinstance(e, FileNotFoundError):
        return "no such file (moved or deleted after the inputs were listed?)"
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, IsADirectoryError):
        return "is a directory, not a file"
    if isinstance(e, OSError) and e.strerror:
        return f"{type(e).__name__}: {e.strerror}"
    return f"{type(e).__name__}: {e}"


def _open_decoder(uri: str, fileobj: _ReadTrap, make_source: Callable[..., _Source]) -> _Source:
    """Opens ``fileobj`` with libsndfile, else PyAV; ``make_source(info, **handles)`` builds the result."""
    name = display_path(uri)
    try:
        size = fileobj.seek(0, 2)
        fileobj.seek(0)
    except OSError as e:
        raise AudioDecodeError("io_error", f"{name}: cannot read: {_io_reason(e)}") from e
    if size == 0:
        raise AudioDecodeError("empty_file", f"{name}: file is empty (0 bytes)")

    try:
        sf = soundfile.SoundFile(fileobj)
    except soundfile.LibsndfileError as e:
        fileobj.check(name, "while opening")
        sf_error = e
    except OSError as e:
        raise AudioDecodeError("io_error", f"{name}: read failed: {_io_reason(e)}") from e
    else:
        try:
            fileobj.check(name, "while opening")
        except AudioDecodeError:
            sf.close()
            raise
        exact = sf.seekable() and sf.subtype.startswith(_EXACT_SEEK_SUBTYPES)
        info = AudioInfo(sf.samplerate, sf.channels, f"{sf.format}/{sf.subtype}", "soundfile", sf.frames, exact)
        return make_source(info, sf_file=sf)

    # libsndfile cannot open it: an unrecognised format, or a damaged header it recognised.
    sf_reason = _sf_reason(sf_error)
    sf_unrecognised = sf_error.code in _SF_UNRECOGNISED_CODES
    av = _import_av()
    if av is None:
        if sf_unrecognised:
            raise AudioDecodeError("unsupported_format", f"{name}: libsndfile: {sf_reason}; {_AV_HINT}") from sf_error
        raise AudioDecodeError("corrupt", f"{name}: invalid file: {sf_reason}") from sf_error

    fileobj.seek(0)
    try:
        # Tags are not ours to judge: bytes that are not UTF-8 must not fail the file.
        container = av.open(fileobj, mode="r", metadata_errors="replace")
    except av.FFmpegError as e:
        fileobj.check(name, "while opening")
        kind = "unsupported_format" if sf_unrecognised else "corrupt"
        what = "no decoder can open it" if sf_unrecognised else "invalid file"
        raise AudioDecodeError(kind, f"{name}: {what} (libsndfile: {sf_reason}; PyAV: {_av_reason(e)})") from e
    except OSError as e:
        raise AudioDecodeError("io_error", f"{name}: read failed: {_io_reason(e)}") from e
    try:
        fileobj.check(name, "while opening")
        return _open_av_stream(av, uri, fileobj, container, make_source, sf_reason)
    except BaseException:
        container.close()
        raise


def _open_av_stream(
    av: ModuleType,
    uri: str,
    fileobj: _ReadTrap,
    container: Any,
    make_source: Callable[..., _Source],
    sf_reason: str,
) -> _Source:
    name = display_path(uri)
    fmt = container.format.name
    if not container.streams.audio:
        raise AudioDecodeError("no_audio", f"{name}: {fmt} container has no audio stream")
    stream = container.streams.audio[0]
    if stream.codec_context is None:  # FFmpeg knows the container but has no decoder for the codec
        raise AudioDecodeError(
            "unsupported_format",
            f"{name}: {fmt} audio stream in a codec no decoder here supports (libsndfile: {sf_reason})",
        )
    codec = f"{fmt}/{stream.codec_context.name}"
    # Peek at the first frame: its rate and layout are what the decoder really outputs (header
    # values can differ, e.g. HE-AAC signals half its output rate).
    frames = container.decode(stream)
    try:
        first = next(frames, None)
    except av.FFmpegError as e:
        fileobj.check(name, "after 0.0 s")
        raise AudioDecodeError("corrupt", f"{name}: decode failed after 0.0 s: {_av_reason(e)}") from e
    fileobj.check(name, "after 0.0 s")
    if first is None:
        raise AudioDecodeError("no_audio", f"{name}: {codec} stream contains no audio samples")
    info = AudioInfo(int(first.sample_rate), int(first.layout.nb_channels), codec, "pyav")
    return make_source(info, av_container=container, av_frames=itertools.chain([first], frames))


def decode_file(uri: str) -> tuple[np.ndarray, AudioInfo, float]:
    """Decode a whole file to 16 kHz mono float32 (for notebooks and tests, not long files).

    Returns the signal, the source :class:`AudioInfo` and the source duration in seconds.
    """
    with open_audio(uri) as stream:
        blocks = list(stream.blocks())
        signal = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
        return signal, stream.info, stream.duration_s
