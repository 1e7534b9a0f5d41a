"""What a window looks and sounds like, made on the server from the source audio: a log-mel spectrogram PNG
with the 0.975 s window marked, and a WAV clip of the window with a little context. numpy and zlib only
(a small PNG writer), so a page of 20 windows costs milliseconds each, not a plotting library's start-up.
"""

from __future__ import annotations

import io
import struct
import wave
import zlib
from collections import OrderedDict
from threading import Lock

import numpy as np

from yamnet_beam import framing

SR = framing.SAMPLE_RATE
CONTEXT_S = 1.0  # audio and spectrogram show this much before and after the window
N_FFT, WIN, HOP = 512, 400, 160  # 25 ms windows every 10 ms, as YAMNet's own front end
MELS, FMIN, FMAX = 64, 125.0, 7500.0
ROW_SCALE = 2  # each mel band is drawn 2 pixels tall
# viridis at five stops: dark blue, blue, teal, green, yellow
_STOPS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float64)


def clip_bounds(start_s: float, end_s: float, duration_s: float, context_s: float = CONTEXT_S) -> tuple[float, float]:
    """The clip around a window: ``context_s`` either side, within the audio."""
    return max(0.0, start_s - context_s), min(duration_s, end_s + context_s)


def wav_bytes(signal: np.ndarray, sr: int = SR) -> bytes:
    """16-bit PCM mono WAV."""
    pcm = (np.clip(signal, -1.0, 1.0) * 32767.0).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def _hz_to_mel(f):
    return 1127.0 * np.log1p(np.asarray(f) / 700.0)


def mel_matrix(n_fft: int = N_FFT, mels: int = MELS, sr: int = SR) -> np.ndarray:
    """``[n_fft//2 + 1, mels]`` triangular filters, evenly spaced in mel between FMIN and FMAX."""
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    edges = np.linspace(_hz_to_mel(FMIN), _hz_to_mel(FMAX), mels + 2)
    m = _hz_to_mel(freqs)[:, None]
    lower = (m - edges[None, :-2]) / (edges[1:-1] - edges[:-2])[None, :]
    upper = (edges[None, 2:] - m) / (edges[2:] - edges[1:-1])[None, :]
    return np.maximum(0.0, np.minimum(lower, upper))


_MEL = mel_matrix()


def log_mel(signal: np.ndarray) -> np.ndarray:
    """``[frames, MELS]`` log-mel magnitudes (10 ms hop)."""
    x = np.asarray(signal, np.float32)
    if len(x) < WIN:
        x = np.pad(x, (0, WIN - len(x)))
    n = 1 + (len(x) - WIN) // HOP
    idx = np.arange(WIN)[None, :] + HOP * np.arange(n)[:, None]
    spec = np.abs(np.fft.rfft(x[idx] * np.hanning(WIN)[None, :], n=N_FFT))
    return np.log(spec @ _MEL + 1e-3)


def colorize(v: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB along the viridis stops."""
    pos = np.clip(v, 0, 1) * (len(_STOPS) - 1)
    i = np.minimum(pos.astype(int), len(_STOPS) - 2)
    f = (pos - i)[..., None]
    return (_STOPS[i] * (1 - f) + _STOPS[i + 1] * f).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of ``[height, width, 3]`` uint8 (filter 0 on every row)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[r].tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def spectrogram_png(clip: np.ndarray, window_from_s: float, window_to_s: float) -> bytes:
    """The clip's log-mel spectrogram (low frequencies at the bottom) with the window's edges as white lines
    (``window_*_s`` relative to the clip's start)."""
    m = log_mel(clip).T[::-1]  # [mels, frames], high bands on top
    lo, hi = np.percentile(m, 5), np.max(m)
    img = colorize((m - lo) / max(hi - lo, 1e-6))
    img = np.repeat(img, ROW_SCALE, axis=0)
    cols = img.shape[1]
    for t in (window_from_s, window_to_s):
        c = int(round(t * SR / HOP))
        if 0 <= c < cols:
            img[:, c] = 255
    return png_bytes(np.ascontiguousarray(img))


class SignalCache:
    """The last few decoded files (a page of results comes from a handful of files); thread-safe."""

    def __init__(self, decode, size: int = 24):
        self._decode, self._size = decode, size
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = Lock()

    def get(self, path: str) -> np.ndarray:
        with self._lock:
            if path in self._items:
                self._items.move_to_end(path)
                return self._items[path]
        signal = self._decode(path)
        with self._lock:
            self._items[path] = signal
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return signal
