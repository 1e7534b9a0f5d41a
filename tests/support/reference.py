"""Independent references for what the job computes, built without the package's audio, framing or model code.

Decoding with soundfile (PyAV's own decode for what libsndfile cannot read), the channel mean, soxr's
whole-array HQ resampler; framing by the documented formula; scores from a plain LiteRT interpreter.
"""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE, WINDOW, HOP = 16000, 15600, 7680


def decode_16k(path: str | Path) -> np.ndarray:
    """The file's samples, channel mean, resampled to 16 kHz by soxr HQ in one call."""
    try:
        x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except sf.LibsndfileError:
        with av.open(str(path)) as c:
            rate = c.streams.audio[0].rate
            x = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1).T.astype(np.float32)
    mono = x.mean(axis=1, dtype=np.float64).astype(np.float32)
    return mono if rate == SAMPLE_RATE else soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")


def num_frames(n: int, hop: int = HOP) -> int:
    """``1 + ceil(max(0, n - window) / hop)``, the manifest's formula: a file shorter than a window has one."""
    return 1 + math.ceil(max(0, n - WINDOW) / hop)


def frames(x: np.ndarray, hop: int = HOP) -> np.ndarray:
    """``[F, 15600]`` windows every ``hop`` samples, the last zero-padded."""
    n = num_frames(len(x), hop)
    padded = np.zeros((n - 1) * hop + WINDOW, np.float32)
    padded[: len(x)] = x
    return np.stack([padded[i * hop : i * hop + WINDOW] for i in range(n)])


def interpreter_scores(model_path: str | Path, windows: np.ndarray) -> np.ndarray:
    """``[F, 521]`` scores, one plain ``invoke()`` per window, as YAMNet ships."""
    from ai_edge_litert.interpreter import Interpreter

    plain = Interpreter(model_path=str(model_path), num_threads=1)
    plain.allocate_tensors()
    inp = plain.get_input_details()[0]["index"]
    out = next(d["index"] for d in plain.get_output_details() if d["name"] == "Identity")
    scores = []
    for w in windows:
        plain.set_tensor(inp, w[None].astype(np.float32))
        plain.invoke()
        scores.append(plain.get_tensor(out)[0].copy())
    return np.stack(scores)
