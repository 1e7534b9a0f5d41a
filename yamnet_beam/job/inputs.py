"""What one matched ``--input`` file is (:class:`InputFile`: path and identity) and how its identity is read.

Matching itself (globs, directories, manifests) is :mod:`.listing`: checked on the launcher, expanded
on workers, or in-process with :func:`.listing.match_inputs` for Beam-free callers. Works on any
fsspec filesystem (local, ``gs://``, ``s3://``, ``http(s)://``).
"""

from __future__ import annotations

from dataclasses import dataclass

import fsspec

from yamnet_beam.errors import UserError
from yamnet_beam.uris import mtime_of


class InputError(UserError, ValueError):
    """An ``--input`` that cannot be used; the message names it and says what to do."""


@dataclass(frozen=True)
class InputFile:
    """One matched input and its identity (size, modification time, etag) as the filesystem reported it.

    The identity lets ``--mode resume`` tell an unchanged file from a changed one. Fields are None when
    not known without an extra request (manifest entries); :func:`with_identity` fills them.
    """

    path: str
    size_bytes: int | None = None
    mtime: float | None = None
    etag: str | None = None


def _etag(info: dict) -> str | None:
    for key in ("etag", "ETag", "md5Hash", "md5"):
        if info.get(key):
            return str(info[key]).strip('"')
    return None


def from_info(uri: str, info: dict) -> InputFile:
    size = info.get("size")
    return InputFile(uri, int(size) if size is not None else None, mtime_of(info), _etag(info))


def has_identity(item: InputFile) -> bool:
    """Whether ``item`` has what ``--mode resume`` compares (a listing gives it; a manifest entry does not)."""
    return item.size_bytes is not None and (item.mtime is not None or item.etag is not None)


def with_identity(item: InputFile) -> InputFile:
    """``item`` with size/mtime/etag looked up if it lacks them (one metadata request; errors leave it as is)."""
    if has_identity(item):
        return item
    try:
        fs, path = fsspec.core.url_to_fs(item.path)
        return from_info(item.path, fs.info(path))
    except Exception:  # missing or unreadable: the decoder will say why, in the files/ row
        return item
