"""Synthesise a small, deterministic demo audio set that YAMNet recognises.

Real recordings would need licences and downloads; these signals are generated from code, so
the demo (and its test) runs offline and always produces the same bytes. Each file exercises a
different container, sample rate or channel count, so the demo also shows the decode/resample
path, and each one gets a distinct, sensible clip-level top class from the shared YAMNet model
(mean of the frame scores; window 15600, hop 7680 at 16 kHz; ai-edge-litert 2.3.0, XNNPACK):

=================================  ===============================  ===================================
file                               signal                           clip top-1 (runner-up), mean score
=================================  ===============================  ===================================
``sine_250hz_16k.wav``             250 Hz sine, 8 s                 Sine wave 0.93 (Singing bowl 0.30)
``white_noise_44k_stereo.flac``    white noise, -43 dBFS RMS, 8 s   White noise 0.46 (Noise 0.35)
``siren_48k.ogg``                  600-1300 Hz wail, 12 s           Siren 0.91 (Alarm 0.87)
``chime_22k.wav``                  two-tone "ding-dong", 10 s       Ding 0.60 (Clang 0.19)
``silence_then_dial_tone_8k.wav``  6 s silence, 4 s 350+440 Hz      Silence 0.58 (Telephone 0.41)
=================================  ===============================  ===================================

Per frame, the last file goes from "Silence" to "Telephone"/"Dial tone", which shows the frame timestamps.
Choices that matter: a 1 kHz sine is heard as "Beep, bleep" and 440 Hz as "Dial tone", hence
250 Hz; louder white noise drifts to "Noise"/"Static"/"Waterfall"; a siren needs a harmonic-rich
(sawtooth-like) wail, a pure swept sine is "Theremin"/"Synthesizer"; "Siren" and its parent
"Alarm" always score close together. The table's scores are measured on the written files.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

SEED = 20240521


def _t(seconds: float, sr: int) -> np.ndarray:
    return np.arange(int(round(seconds * sr))) / sr


def sine(sr: int) -> np.ndarray:
    """A quiet 250 Hz sine: low enough not to read as a beep or dial tone."""
    return 0.1 * np.sin(2 * np.pi * 250.0 * _t(8.0, sr))


def white_noise(sr: int) -> np.ndarray:
    """Independent Gaussian noise per channel at about -43 dBFS RMS, shape (n, 2)."""
    rng = np.random.default_rng(SEED)
    return 0.007 * rng.standard_normal((int(8.0 * sr), 2))


def siren(sr: int) -> np.ndarray:
    """A wail: pitch rises and falls linearly 600-1300 Hz every 4 s, 8 harmonics (sawtooth-like)."""
    t = _t(12.0, sr)
    phase_in_cycle = (t / 4.0) % 1.0
    up_down = 1.0 - 2.0 * np.abs(phase_in_cycle - 0.5)  # 0 -> 1 -> 0
    freq = 600.0 + 700.0 * up_down
    phase = 2 * np.pi * np.cumsum(freq) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 9))
    return 0.3 * x / np.max(np.abs(x))


def _bell(freq: float, sr: int, seconds: float = 1.5, decay: float = 4.0) -> np.ndarray:
    t = _t(seconds, sr)
    partials = ((1.0, 1.0), (2.0, 0.5), (3.0, 0.25), (4.2, 0.15), (5.4, 0.1))  # 4.2, 5.4: bell-like
    return sum(a * np.sin(2 * np.pi * freq * p * t) * np.exp(-t * decay * p**0.5) for p, a in partials)


def chime(sr: int) -> np.ndarray:
    """A doorbell-like "ding-dong" (E6 then C6 decaying bells) every 2.5 s for 10 s."""
    n = int(10.0 * sr)
    x = np.zeros(n)
    for start in np.arange(0.0, 10.0 - 1.5, 2.5):
        for k, freq in enumerate((1318.5, 1046.5)):
            b = _bell(freq, sr)
            i = int((start + 0.7 * k) * sr)
            x[i : i + len(b)] += b[: n - i]
    return 0.3 * x / np.max(np.abs(x))


def silence_then_dial_tone(sr: int) -> np.ndarray:
    """6 s of digital silence, then 4 s of the North American dial tone (350 + 440 Hz)."""
    t = _t(4.0, sr)
    tone = 0.15 * (np.sin(2 * np.pi * 350.0 * t) + np.sin(2 * np.pi * 440.0 * t))
    return np.concatenate([np.zeros(int(6.0 * sr)), tone])


# file name -> (signal, sample rate, soundfile format, subtype)
_FILES: dict[str, tuple[Callable[[int], np.ndarray], int, str, str]] = {
    "sine_250hz_16k.wav": (sine, 16000, "WAV", "PCM_16"),
    "white_noise_44k_stereo.flac": (white_noise, 44100, "FLAC", "PCM_16"),
    "siren_48k.ogg": (siren, 48000, "OGG", "VORBIS"),
    "chime_22k.wav": (chime, 22050, "WAV", "PCM_16"),
    "silence_then_dial_tone_8k.wav": (silence_then_dial_tone, 8000, "WAV", "PCM_16"),
}


def make_demo_audio(dest_dir: str | Path) -> list[Path]:
    """Write the demo files into ``dest_dir`` (created if needed) and return their paths, sorted.

    Same inputs give the same bytes on every run, so outputs derived from them can be compared.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (signal, sr, fmt, subtype) in _FILES.items():
        buf = io.BytesIO()
        sf.write(buf, signal(sr).astype(np.float32), sr, format=fmt, subtype=subtype)
        data = buf.getvalue()
        if fmt == "OGG":
            data = fix_ogg_serial(data)
        path = dest / name
        path.write_bytes(data)
        paths.append(path)
    return sorted(paths)


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_OGG_CRC = _crc_table()


def _ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _OGG_CRC[(crc >> 24) ^ byte]
    return crc


def fix_ogg_serial(data: bytes, serial: int = 0x59414D4E) -> bytes:
    """Set every Ogg page's stream serial number to ``serial`` and redo the page CRCs.

    libsndfile picks a time-seeded random serial, the only nondeterministic bytes in its Ogg
    output; fixing it makes the demo files byte-identical across runs. Single-stream files only.
    """
    out = bytearray(data)
    pos = 0
    while pos < len(out):
        if out[pos : pos + 4] != b"OggS":
            raise ValueError(f"not an Ogg page at byte {pos}")
        nsegs = out[pos + 26]
        body = sum(out[pos + 27 : pos + 27 + nsegs])
        end = pos + 27 + nsegs + body
        out[pos + 14 : pos + 18] = serial.to_bytes(4, "little")
        out[pos + 22 : pos + 26] = b"\0\0\0\0"
        out[pos + 22 : pos + 26] = _ogg_crc(bytes(out[pos:end])).to_bytes(4, "little")
        pos = end
    return bytes(out)


def clip_top_labels(output_dir: str | Path) -> list[tuple[str, str, float]]:
    """(file name, top class, mean score) per file of a finished run: mean-pooled frame scores.

    Reads the committed ``frames/`` parts and ``labels.csv`` with pyarrow only, so the demo shows its result
    without extra dependencies (``yamnet-beam query`` style tools use DuckDB instead).
    """
    import pyarrow as pa

    from yamnet_beam.table.output import OutputDir
    from yamnet_beam.table.schema import list_matrix

    out = OutputDir(str(output_dir))
    names = out.labels.names
    table = pa.concat_tables(out.read_parts(out.frame_files, ["path", "scores"]))
    paths = np.asarray(table.column("path").to_pylist(), dtype=object)
    scores = list_matrix(table.column("scores"))
    rows = []
    for path in sorted(set(paths)):
        mean = scores[paths == path].mean(axis=0)
        rows.append((Path(path).name, names[int(mean.argmax())], float(mean.max())))
    return rows


# --------------------------------------------------------------------------------------------
# A labelled set for `yamnet-beam train`: four sound classes YAMNet has no single name for each file of,
# six files per class (different frequencies, rates and levels), 16 kHz mono float WAV, 3 s each.

LABELLED_CLASSES = ("tone", "chirp", "noise_band", "pulses")
LABELLED_SECONDS = 3.0


def _labelled_signal(cls: str, i: int, sr: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(SEED + 100 * LABELLED_CLASSES.index(cls) + i)
    t = _t(LABELLED_SECONDS, sr)
    level = (0.05, 0.1, 0.2, 0.4, 0.07, 0.3)[i % 6]
    if cls == "tone":
        x = np.sin(2 * np.pi * (300.0 * 1.6**i) * t)
    elif cls == "chirp":  # linear sweep, up or down, over the file
        f0, f1 = (400.0 + 200 * i, 3000.0 + 500 * i)[:: 1 if i % 2 == 0 else -1]
        x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * LABELLED_SECONDS)))
    elif cls == "noise_band":  # white noise band-passed in the frequency domain around a centre frequency
        spec = np.fft.rfft(rng.standard_normal(len(t)))
        f = np.fft.rfftfreq(len(t), 1 / sr)
        centre = 500.0 * 1.5**i
        spec[(f < centre / 1.5) | (f > centre * 1.5)] = 0
        x = np.fft.irfft(spec, len(t))
        x /= np.abs(x).max()
    else:  # short 2 kHz bursts at a steady rate
        rate = 2.0 + i
        x = np.sin(2 * np.pi * 2000.0 * t) * ((t * rate) % 1.0 < 0.15)
    return (level * x).astype(np.float32)


def make_labelled_audio(dest_dir: str | Path) -> Path:
    """Writes the labelled set and its ``labels.csv`` (``path,label``, paths relative to it); returns the CSV."""
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    rows = ["path,label"]
    for cls in LABELLED_CLASSES:
        for i in range(6):
            name = f"{cls}_{i}.wav"
            sf.write(dest / name, _labelled_signal(cls, i), 16000, subtype="FLOAT")
            rows.append(f"{name},{cls}")
    csv_path = dest / "labels.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    return csv_path
