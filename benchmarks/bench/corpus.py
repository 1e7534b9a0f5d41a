"""The benchmark corpus: a deterministic speech-like signal in every container, rate and channel count.

Synthesised (no downloads) into the cache directory and regenerated only when its spec or
:data:`GENERATOR_VERSION` changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

GENERATOR_VERSION = 1  # bump when the signal or the corpus layout changes, to regenerate the cache
TARGET_RATE = 16000
WRITE_CHUNK = 65536  # libsndfile's Vorbis encoder segfaults on very large single writes
_FORMATS = {  # container -> (soundfile format, subtype, extension)
    "WAV": ("WAV", "PCM_16", "wav"),
    "FLAC": ("FLAC", "PCM_16", "flac"),
    "MP3": ("MP3", "MPEG_LAYER_III", "mp3"),
    "OGG": ("OGG", "VORBIS", "ogg"),
}


@dataclasses.dataclass(frozen=True)
class AudioSpec:
    """One synthetic file: enough to regenerate it bit for bit."""

    name: str
    container: str
    rate: int
    channels: int
    seconds: float
    seed: int

    @property
    def filename(self) -> str:
        return f"{self.name}.{_FORMATS[self.container][2]}"


@dataclasses.dataclass(frozen=True)
class Corpus:
    mixed: list[AudioSpec]
    long: AudioSpec
    short: AudioSpec
    tiny: AudioSpec

    def all(self) -> list[AudioSpec]:
        return [*self.mixed, self.long, self.short, self.tiny]


def corpus_specs(quick: bool) -> Corpus:
    """Mixed corpus: every container x {16, 44.1, 48} kHz x {mono, stereo}, 60-120 s each (>= 30 min).

    The long file is FLAC 44.1 kHz stereo (not WAV 16 kHz) on purpose: it takes every stage (FLAC
    decode, downmix, resampling), and a whole-file decode would need 2.5 GB of float32, so any
    buffering that grows with file length shows up plainly in RSS.
    """
    combos = [(c, r, ch) for c in _FORMATS for r in (16000, 44100, 48000) for ch in (1, 2)]
    if quick:
        combos = [c for i, c in enumerate(combos) if (i // 2 + i) % 2 == 0]  # 12 files, mono and stereo
        mixed = [
            AudioSpec(f"quick_{i:02d}_{c.lower()}_{r}_{ch}ch", c, r, ch, 25.0 + (i * 7) % 11, 100 + i)
            for i, (c, r, ch) in enumerate(combos)
        ]
        long_s, short_s = 180.0, 60.0
    else:
        mixed = [
            AudioSpec(f"mixed_{i:02d}_{c.lower()}_{r}_{ch}ch", c, r, ch, 60.0 + (i * 37) % 61, 100 + i)
            for i, (c, r, ch) in enumerate(combos)
        ]
        long_s, short_s = 7200.0, 600.0
    return Corpus(
        mixed=mixed,
        long=AudioSpec(f"long_{int(long_s)}s_flac_44100_2ch", "FLAC", 44100, 2, long_s, 7),
        short=AudioSpec(f"long_{int(short_s)}s_flac_44100_2ch", "FLAC", 44100, 2, short_s, 7),
        tiny=AudioSpec("tiny_1s_wav_16000_1ch", "WAV", 16000, 1, 1.0, 1),
    )


def synth_block(start: int, n: int, rate: int, channels: int, seed: int) -> np.ndarray:
    """Samples ``[start, start+n)`` of a deterministic speech-like signal, ``(n, channels)`` float32.

    Syllable-rate envelope over a gliding harmonic "voice", a chirp every 7 s, noise bursts between
    syllables and a low noise floor: enough structure for realistic compression and model work.
    Depends only on the absolute sample index, so any block size gives the same signal.
    """
    t = np.arange(start, start + n, dtype=np.float64) / rate
    env = np.maximum(0.0, np.sin(2 * np.pi * 3.7 * t + seed)) ** 2 * (0.55 + 0.45 * np.sin(2 * np.pi * 0.23 * t))
    phase = 2 * np.pi * (140 * t - 40 / np.pi * np.cos(np.pi * t + seed))  # f0 = 140 + 40 sin(pi t)
    s = np.sin(phase)
    c = np.cos(phase)
    s2 = 2 * s * c  # sin 2x
    s3 = s * (3 - 4 * s * s)  # sin 3x
    voiced = s + 0.5 * s2 + 0.33 * s3
    tc = np.mod(t + 0.37 * seed, 7.0)
    chirp = np.where(tc < 1.0, np.sin(2 * np.pi * (500 * tc + 1750 * tc * tc)), 0.0)
    rng = np.random.default_rng([seed, start])
    noise = rng.standard_normal((n, channels)).astype(np.float32) * np.float32(0.004)
    bursts = (1 - env) * (np.sin(2 * np.pi * 0.9 * t) > 0.6)
    x = (0.25 * env * voiced + 0.12 * chirp).astype(np.float32)
    x += (0.2 * bursts).astype(np.float32) * noise[:, 0] * np.float32(10)
    out = np.empty((n, channels), np.float32)
    out[:, 0] = x + noise[:, 0]
    for ch in range(1, channels):
        out[:, ch] = np.float32(0.8) * x + noise[:, ch]
    return out


def write_audio(spec: AudioSpec, path: Path) -> None:
    """Writes ``spec`` to ``path`` block by block (memory stays flat even for the 2-hour file)."""
    fmt, subtype, _ = _FORMATS[spec.container]
    import soundfile as sf

    total = int(round(spec.seconds * spec.rate))
    block = 30 * spec.rate
    tmp = path.with_name(path.name + ".tmp")
    with sf.SoundFile(str(tmp), "w", spec.rate, spec.channels, format=fmt, subtype=subtype) as f:
        for start in range(0, total, block):
            x = synth_block(start, min(block, total - start), spec.rate, spec.channels, spec.seed)
            for i in range(0, len(x), WRITE_CHUNK):
                f.write(x[i : i + WRITE_CHUNK])
    tmp.replace(path)
    _key_path(path).write_text(_spec_key(spec))


def _key_path(path: Path) -> Path:
    return path.with_name(path.name + ".key")


def _spec_key(spec: AudioSpec) -> str:
    blob = json.dumps([GENERATOR_VERSION, dataclasses.asdict(spec)], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def ensure_corpus(corpus: Corpus, cache: Path, log: Callable[[str], None]) -> dict[str, Path]:
    """Generates missing or stale files (2 processes); returns spec name -> path.

    Each file has a ``.key`` sidecar (hash of its spec and the generator version), written after the file.
    """
    audio_dir = cache / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)

    def fresh(s: AudioSpec) -> bool:
        key = _key_path(audio_dir / s.filename)
        return (audio_dir / s.filename).exists() and key.exists() and key.read_text() == _spec_key(s)

    todo = [s for s in corpus.all() if not fresh(s)]
    if todo:
        secs = sum(s.seconds for s in todo)
        log(f"generating {len(todo)} corpus files ({secs / 60:.0f} min of audio) into {audio_dir} ...")
        t0 = time.perf_counter()
        todo.sort(key=lambda s: -s.seconds * s.rate * s.channels)
        with ProcessPoolExecutor(max_workers=2) as ex:
            list(ex.map(write_audio, todo, [audio_dir / s.filename for s in todo]))
        log(f"  done in {time.perf_counter() - t0:.0f} s")
    return {s.name: audio_dir / s.filename for s in corpus.all()}


def speech_16k(seconds: float, seed: int = 3) -> np.ndarray:
    return np.ascontiguousarray(synth_block(0, int(seconds * TARGET_RATE), TARGET_RATE, 1, seed)[:, 0])
