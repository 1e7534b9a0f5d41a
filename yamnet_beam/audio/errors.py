"""Decode failures as data: :class:`AudioDecodeError` and its ``kind``s, and plain-words reasons for the
errors of libsndfile, PyAV and the file system, so a pipeline records a row instead of crashing.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import soundfile

ERROR_KINDS: frozenset[str] = frozenset(
    {"empty_file", "unsupported_format", "corrupt", "io_error", "no_audio", "timeout", "too_long"}
)


AV_HINT = 'install PyAV for more formats: pip install "yamnet-beam[av]"'


# libsndfile's "cannot identify this file" errors. Code 7 ("File does not exist or is not a
# regular file") is what it says for unrecognisable bytes opened by path, e.g. random data
# named .mp3; we only open file objects (code 1) but map both the same way.
SF_UNRECOGNISED_CODES = frozenset({1, 7})


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


def import_av() -> ModuleType | None:
    try:
        import av
    except ImportError:
        return None
    return av


def describe_sf_error(e: soundfile.LibsndfileError) -> str:
    if e.code in SF_UNRECOGNISED_CODES:
        return "format not recognised"
    return (e.error_string or str(e)).removeprefix("Error : ").rstrip(".")


def describe_av_error(e: BaseException) -> str:
    return str(getattr(e, "strerror", None) or e).rstrip(".")


def is_av_error(e: BaseException) -> bool:
    av = import_av()
    return av is not None and isinstance(e, av.FFmpegError)


def describe_io_error(e: BaseException) -> str:
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
