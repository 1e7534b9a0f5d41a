"""The decoder proper: one open file and its libsndfile or PyAV handle, yielding downmixed 16 kHz blocks,
counting and repairing bad samples, and turning mid-stream failures into :class:`AudioDecodeError`.
Used by one thread only (the background decode thread of :mod:`yamnet_beam.audio.stream`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import soundfile

from yamnet_beam.audio.errors import (
    AudioDecodeError,
    describe_av_error,
    describe_io_error,
    describe_sf_error,
    is_av_error,
)
from yamnet_beam.audio.resample import ChunkResampler, downmix, segment_quantum
from yamnet_beam.framing import SAMPLE_RATE as TARGET_SAMPLE_RATE  # YAMNet's rate, defined once
from yamnet_beam.uris import display_path

# Finite samples beyond this are clipped (audio is nominally within [-1, 1]): the model still gives
# finite scores at 1e9 but NaN at 2**63, and sums of channels and resampler gains stay finite.
_MAX_ABS_SAMPLE = np.float32(2.0**20)
# libsndfile seeks sample-exactly in PCM-like data; lossy decoders (MP3, Vorbis, Opus) may differ after
# a seek (measured: a 44.1 kHz MP3 by ~1e-7, and VBR MP3 headers may misstate the length).
EXACT_SEEK_SUBTYPES = ("PCM_", "FLOAT", "DOUBLE", "ULAW", "ALAW")


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


class ReadTrap:
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
            raise AudioDecodeError(
                "io_error", f"{name}: read failed {when}: {describe_io_error(self.error)}"
            ) from self.error


class Source:
    """The decoder proper: owns the file object and libsndfile/PyAV handle, yields 16 kHz blocks.

    Everything it touches (file, decoder, resampler) is used by one thread only: the background
    decode thread.
    """

    def __init__(
        self,
        uri: str,
        fileobj: ReadTrap,
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
        resampler = None if rate == TARGET_SAMPLE_RATE else ChunkResampler(rate, self._quality, start // q)
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
        resampler = None if rate == TARGET_SAMPLE_RATE else ChunkResampler(rate, self._quality)
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
                raise self._corrupt(describe_sf_error(e)) from e
            except Exception as e:
                self._check_read()
                if is_av_error(e):
                    raise self._corrupt(describe_av_error(e)) from e
                if isinstance(e, OSError):  # the file object failed: network, permissions
                    raise AudioDecodeError(
                        "io_error",
                        f"{self.name}: read failed after {self.duration_s:.1f} s: {describe_io_error(e)}",
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
