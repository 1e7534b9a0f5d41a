"""Opening a file: the fsspec file object, libsndfile first, PyAV for what it cannot read, and which
audio file extensions either can decode.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from types import ModuleType
from typing import Any

import fsspec
import soundfile

from yamnet_beam.audio import errors
from yamnet_beam.audio.errors import (
    AV_HINT,
    SF_UNRECOGNISED_CODES,
    AudioDecodeError,
    describe_av_error,
    describe_io_error,
    describe_sf_error,
)
from yamnet_beam.audio.source import EXACT_SEEK_SUBTYPES, AudioInfo, ReadTrap, Source
from yamnet_beam.uris import display_path

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


def open_source(
    uri: str, block_seconds: float, quality: str, max_duration_s: float | None, segment: tuple[int, int | None] | None
) -> Source:
    name = display_path(uri)
    try:
        fileobj = ReadTrap(_open_file(uri))
    except Exception as e:  # FileNotFoundError, PermissionError, network and auth errors
        raise AudioDecodeError("io_error", f"{name}: cannot open: {describe_io_error(e)}") from e
    make_source = functools.partial(
        Source,
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


def _open_decoder(uri: str, fileobj: ReadTrap, make_source: Callable[..., Source]) -> Source:
    """Opens ``fileobj`` with libsndfile, else PyAV; ``make_source(info, **handles)`` builds the result."""
    name = display_path(uri)
    try:
        size = fileobj.seek(0, 2)
        fileobj.seek(0)
    except OSError as e:
        raise AudioDecodeError("io_error", f"{name}: cannot read: {describe_io_error(e)}") from e
    if size == 0:
        raise AudioDecodeError("empty_file", f"{name}: file is empty (0 bytes)")

    try:
        sf = soundfile.SoundFile(fileobj)
    except soundfile.LibsndfileError as e:
        fileobj.check(name, "while opening")
        sf_error = e
    except OSError as e:
        raise AudioDecodeError("io_error", f"{name}: read failed: {describe_io_error(e)}") from e
    else:
        try:
            fileobj.check(name, "while opening")
        except AudioDecodeError:
            sf.close()
            raise
        exact = sf.seekable() and sf.subtype.startswith(EXACT_SEEK_SUBTYPES)
        info = AudioInfo(sf.samplerate, sf.channels, f"{sf.format}/{sf.subtype}", "soundfile", sf.frames, exact)
        return make_source(info, sf_file=sf)

    # libsndfile cannot open it: an unrecognised format, or a damaged header it recognised.
    sf_reason = describe_sf_error(sf_error)
    sf_unrecognised = sf_error.code in SF_UNRECOGNISED_CODES
    av = errors.import_av()
    if av is None:
        if sf_unrecognised:
            raise AudioDecodeError("unsupported_format", f"{name}: libsndfile: {sf_reason}; {AV_HINT}") from sf_error
        raise AudioDecodeError("corrupt", f"{name}: invalid file: {sf_reason}") from sf_error

    fileobj.seek(0)
    try:
        # Tags are not ours to judge: bytes that are not UTF-8 must not fail the file.
        container = av.open(fileobj, mode="r", metadata_errors="replace")
    except av.FFmpegError as e:
        fileobj.check(name, "while opening")
        kind = "unsupported_format" if sf_unrecognised else "corrupt"
        what = "no decoder can open it" if sf_unrecognised else "invalid file"
        raise AudioDecodeError(kind, f"{name}: {what} (libsndfile: {sf_reason}; PyAV: {describe_av_error(e)})") from e
    except OSError as e:
        raise AudioDecodeError("io_error", f"{name}: read failed: {describe_io_error(e)}") from e
    try:
        fileobj.check(name, "while opening")
        return _open_av_stream(av, uri, fileobj, container, make_source, sf_reason)
    except BaseException:
        container.close()
        raise


def _open_av_stream(
    av: ModuleType,
    uri: str,
    fileobj: ReadTrap,
    container: Any,
    make_source: Callable[..., Source],
    sf_reason: str,
) -> Source:
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
        raise AudioDecodeError("corrupt", f"{name}: decode failed after 0.0 s: {describe_av_error(e)}") from e
    fileobj.check(name, "after 0.0 s")
    if first is None:
        raise AudioDecodeError("no_audio", f"{name}: {codec} stream contains no audio samples")
    info = AudioInfo(int(first.sample_rate), int(first.layout.nb_channels), codec, "pyav")
    return make_source(info, av_container=container, av_frames=itertools.chain([first], frames))
