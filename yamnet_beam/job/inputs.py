"""Expands ``--input`` values (globs, directories, manifests, single files) into a list of audio URIs.

This is the in-process expansion, for Beam-free callers and tests; the job itself only checks
``--input`` on the launcher and lists on workers (:mod:`.listing`, :mod:`.planning`), with the same
matching rules. Works on any fsspec filesystem (local, ``gs://``, ``s3://``, ``http(s)://``).
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import fsspec
import pyarrow.csv as pacsv

from yamnet_beam.audio import AUDIO_EXTENSIONS
from yamnet_beam.job.schema import read_table
from yamnet_beam.uris import mtime_of, user_uri

MANIFEST_EXTENSIONS = (".txt", ".csv", ".parquet")
_GLOB_CHARS = set("*?[")


class InputError(ValueError):
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


def with_identity(item: InputFile) -> InputFile:
    """``item`` with size/mtime/etag looked up if it lacks them (one metadata request; errors leave it as is)."""
    if item.size_bytes is not None and (item.mtime is not None or item.etag is not None):
        return item
    try:
        fs, path = fsspec.core.url_to_fs(item.path)
        return from_info(item.path, fs.info(path))
    except Exception:  # missing or unreadable: the decoder will say why, in the files/ row
        return item


def _ext(path: str) -> str:
    return posixpath.splitext(path.rstrip("/"))[1].lower()


def _read_manifest(fs: fsspec.AbstractFileSystem, path: str, uri: str) -> list[InputFile]:
    ext = _ext(path)
    with fs.open(path, "rb") as f:
        data = f.read()
    if ext == ".txt":
        entries = [line.strip() for line in data.decode("utf-8").splitlines()]
        entries = [e for e in entries if e and not e.startswith("#")]
    else:
        try:
            table = (
                read_table(io.BytesIO(data), columns=["path"])
                if ext == ".parquet"
                else pacsv.read_csv(io.BytesIO(data))
            )
        except Exception as e:  # pyarrow raises several types for bad files
            raise InputError(f"Manifest {uri} could not be read as {ext[1:]}: {e}") from e
        if "path" not in table.column_names:
            raise InputError(f"Manifest {uri} has no 'path' column (columns: {table.column_names}).")
        entries = [p for p in table.column("path").to_pylist() if p]
    base = posixpath.dirname(path)
    out = []
    for entry in entries:
        entry_fs, entry_path = fsspec.core.url_to_fs(entry) if "://" in entry else (fs, entry)
        if "://" not in entry and not posixpath.isabs(entry):
            entry_path = posixpath.join(base, entry)  # relative entries are relative to the manifest
        out.append(InputFile(user_uri(entry_fs, entry_path)))
    return out


def expand_input(pattern: str) -> list[InputFile]:
    """Matches one ``--input`` value; raises :class:`InputError` if it matches no file."""
    try:
        fs, path = fsspec.core.url_to_fs(pattern)
    except (ImportError, ValueError) as e:
        raise InputError(f"--input {pattern!r}: {e}. Install the filesystem extra (e.g. yamnet-beam[gcp]).") from e
    if _GLOB_CHARS & set(path):
        found = fs.glob(path, detail=True)
        files = [from_info(user_uri(fs, p), i) for p, i in sorted(found.items()) if i.get("type") != "directory"]
    elif fs.isdir(path):
        found = fs.find(path, detail=True)
        files = [
            from_info(user_uri(fs, p), i)
            for p, i in sorted(found.items())
            if i.get("type") != "directory" and _ext(p) in AUDIO_EXTENSIONS
        ]
    elif fs.isfile(path):
        if _ext(path) in MANIFEST_EXTENSIONS:
            files = _read_manifest(fs, path, pattern)
        else:
            files = [from_info(user_uri(fs, path), fs.info(path))]
    else:
        raise InputError(f"--input {pattern!r} does not exist: no such file, directory or glob match.")
    if not files:
        raise InputError(
            f"--input {pattern!r} matched no audio files "
            f"(directories are searched recursively for {', '.join(sorted(AUDIO_EXTENSIONS))})."
        )
    return files


def match_inputs(patterns: Sequence[str] | Iterable[str]) -> list[InputFile]:
    """Expands every pattern, in order, dropping repeats so each file is processed (and reported) once."""
    patterns = list(patterns)
    if not patterns:
        raise InputError("No --input given: pass a file, directory, glob or manifest (may be repeated).")
    seen: dict[str, InputFile] = {}
    for pattern in patterns:
        for f in expand_input(pattern):
            seen.setdefault(f.path, f)
    return list(seen.values())
