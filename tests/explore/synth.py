"""Synthetic classes the explorer tests make: a pulsed 1 kHz beep (the target) among steady tones and noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
SECONDS = 6.0


def _signal(kind: str, i: int) -> np.ndarray:
    rng = np.random.default_rng(1000 * len(kind) + i)
    t = np.arange(int(SECONDS * SR)) / SR
    if kind == "target":  # 1 kHz beeps, 0.1 s on / 0.1 s off
        gate = (np.floor(t / 0.1) % 2 == 0).astype(np.float64)
        x = np.sin(2 * np.pi * (1000 + 20 * i) * t) * gate
    elif kind == "tone":  # steady tones at other pitches
        x = np.sin(2 * np.pi * (1500 + 400 * i) * t)
    else:
        x = rng.standard_normal(len(t)) * 0.3
    return (0.3 * x + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


KINDS = {"target": 6, "tone": 6, "noise": 3}


def make_audio(dest: Path) -> dict[str, str]:
    """Writes the files; returns ``name -> kind``."""
    dest.mkdir(parents=True, exist_ok=True)
    truth = {}
    for kind, n in KINDS.items():
        for i in range(n):
            name = f"{kind}_{i}.wav"
            sf.write(dest / name, _signal(kind, i), SR, subtype="FLOAT")
            truth[name] = kind
    return truth
