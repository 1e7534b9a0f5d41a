"""Audio: any file or URL to the 16 kHz mono float32 signal YAMNet expects, in blocks.

Owns decoding (libsndfile first, PyAV for the rest: :mod:`.decoders`, :mod:`.source`), downmixing by
the mean and fixed-grid soxr resampling (:mod:`.resample`), the background decode thread with its
per-file timeout (:mod:`.stream`; one thread for many files: :mod:`.sequence`), and the error kinds every
failure is reported as (:mod:`.errors`).
May import :mod:`yamnet_beam.framing` and :mod:`yamnet_beam.uris` only: no Beam, no DuckDB, no model,
so a notebook can decode without them.
"""

from yamnet_beam.audio.decoders import AUDIO_EXTENSIONS
from yamnet_beam.audio.errors import ERROR_KINDS, AudioDecodeError
from yamnet_beam.audio.resample import RESAMPLE_CHUNK, downmix, segment_quantum
from yamnet_beam.audio.sequence import open_audio_files
from yamnet_beam.audio.source import AudioInfo
from yamnet_beam.audio.stream import AudioStream, decode_file, open_audio
from yamnet_beam.framing import SAMPLE_RATE as TARGET_SAMPLE_RATE

__all__ = [
    "AUDIO_EXTENSIONS",
    "ERROR_KINDS",
    "RESAMPLE_CHUNK",
    "TARGET_SAMPLE_RATE",
    "AudioDecodeError",
    "AudioInfo",
    "AudioStream",
    "decode_file",
    "downmix",
    "open_audio",
    "open_audio_files",
    "segment_quantum",
]
