"""The shared audio fixtures (``../shared/fixtures/audio``, made by ``make_fixtures.sh``) as tables.

Transcribed from the commands that made each file, so tests compare decoders against the recipe,
not against themselves.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Expected:
    rate: int
    channels: int
    duration: float | None  # None: set by espeak's speech, checked against PyAV metadata
    lossy: bool = False
    decoder: str = "soundfile"


# One row per good fixture, transcribed from make_fixtures.sh.
GOOD = {
    "speech_22k_mono.wav": Expected(22050, 1, None),  # espeak writes 22.05 kHz mono
    "speech_48k_stereo.flac": Expected(48000, 2, None),
    "speech_16k_float32.wav": Expected(16000, 1, None),
    "speech_8k_u8.wav": Expected(8000, 1, None),
    "speech_96k_24bit.wav": Expected(96000, 1, None),
    "speech_44k_stereo.mp3": Expected(44100, 2, None, lossy=True),
    "speech_48k.opus": Expected(48000, 1, None, lossy=True),
    "speech_44k.m4a": Expected(44100, 1, None, lossy=True, decoder="pyav"),
    "tone_1khz_16k.wav": Expected(16000, 1, 4.0),
    "noise_44k_stereo.ogg": Expected(44100, 2, 4.0, lossy=True),
    "sweep_22k.flac": Expected(22050, 1, 5.0),
    "tone_48k_6ch.wav": Expected(48000, 6, 1.5),
    "silence_10s_16k.wav": Expected(16000, 1, 10.0),
    "short_0.3s_16k.wav": Expected(16000, 1, 0.3),
    "exact_one_frame_16k.wav": Expected(16000, 1, 15600 / 16000),
}

# Files derived from the same espeak utterance must all last as long as it does.
SAME_UTTERANCE = [
    ["speech_22k_mono.wav", "speech_48k_stereo.flac", "speech_96k_24bit.wav"],
    ["speech_16k_float32.wav", "speech_8k_u8.wav", "speech_48k.opus", "speech_44k.m4a"],
]

# Each bad fixture's error kind and a phrase of its reason: also what tests/test_audio_bad.py,
# tests/test_integrity.py and tests/test_pipeline.py expect of them.
BAD = {
    "bad_empty.wav": ("empty_file", "empty"),
    "bad_truncated.flac": ("corrupt", "lost sync"),
    "bad_text.wav": ("unsupported_format", "no decoder can open it"),
    "bad_header_only.wav": ("corrupt", "data"),
    "bad_random.mp3": ("unsupported_format", "no decoder can open it"),
}
