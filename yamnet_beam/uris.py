"""Paths and URLs as every layer handles them: local paths or any fsspec URL, shown as valid UTF-8.

The bottom of the package beside :mod:`yamnet_beam.framing`: it imports nothing of yamnet_beam, and
only fsspec beyond the standard library, so audio, model, job and analysis all use one definition.
"""

from __future__ import annotations

import datetime as _dt
import os

import fsspec


def local_or_url(uri: str) -> str:
    """``~`` expanded in local paths; URLs as given."""
    return uri if "://" in uri else os.path.expanduser(uri)


def absolute_uri(uri: str) -> str:
    """Local paths made absolute (workers and records outlive the current directory); URLs as given."""
    return uri if "://" in uri else os.path.abspath(os.path.expanduser(uri))


def is_remote(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether ``fs`` is anything but the local disk (its paths then need their protocol to be URIs)."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol not in ("file", "local")


def user_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """A stable, user-facing URI: plain absolute paths locally, protocol-prefixed URLs elsewhere."""
    return fs.unstrip_protocol(path) if is_remote(fs) else path


def mtime_of(info: dict) -> float | None:
    """Modification time as epoch seconds, from whichever key this filesystem uses."""
    for key in ("mtime", "updated", "LastModified", "last_modified", "modified", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, _dt.datetime):
            return value.timestamp()
        try:
            return _dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
    return None


def display_path(path: str) -> str:
    """``path`` as valid UTF-8 text for tables and messages.

    On Linux a file name is bytes; Python hands non-UTF-8 names over as ``str`` with surrogate
    escapes (``b"caf\\xe9.wav"`` -> ``"caf\\udce9.wav"``), which opens fine but cannot be written
    to Parquet or printed. Such bytes are shown as ``\\xe9``; valid names are returned unchanged.
    """
    try:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    except UnicodeError:  # a lone surrogate that no file system name produced
        return path.encode("utf-8", "backslashreplace").decode("utf-8")
