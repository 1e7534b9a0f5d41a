"""``--input`` expansion on workers, with a bounded check on the launcher (Beam-free; see :mod:`.planning`).

The launcher calls :func:`check_inputs`: each ``--input`` is classified (glob, directory, single
file, ``.txt``/``.csv``/``.parquet`` manifest), made absolute and proven to match at least one file
by stopping at the first hit, so a pattern that matches nothing still stops the job before it
starts, without listing everything. The resulting :class:`InputSpec` values (a few hundred bytes per
``--input``) are all the pipeline carries; workers expand them with :func:`fan_out` (files met on the
way, prefixes to list, manifest ranges), :func:`list_prefix` and :func:`read_range`.

fsspec, not Beam's ``FileSystems``/``fileio.MatchAll``, on purpose: the project reads any fsspec URL
(``gs://`` through gcsfs, ``http(s)://``, ``memory://``, ``file://``) which Beam's file systems do not
all know; Beam's ``**`` is ``.*`` (``a/**/*.wav`` misses ``a/x.wav``) and its local listing walks the
whole tree under the prefix and stats every file twice. Patterns are translated with
``fsspec.utils.glob_translate``, the regex ``fs.glob`` uses. :func:`match_inputs` runs the same
functions in-process, for Beam-free callers: one implementation of the matching rules.
"""

from __future__ import annotations

import csv
import datetime as _dt
import posixpath
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow.parquet as pq
from fsspec.utils import glob_translate

from yamnet_beam.audio import AUDIO_EXTENSIONS
from yamnet_beam.job.inputs import InputError, InputFile, from_info
from yamnet_beam.uris import absolute_uri, user_uri

MANIFEST_EXTENSIONS = (".txt", ".csv", ".parquet")
IDENTITY_COLUMNS = ("size_bytes", "mtime", "etag")  # optional manifest columns, used when present
_GLOB_CHARS = set("*?[")
RANGE_BYTES = 32 << 20  # a text manifest is read in ranges of this many bytes (~400 k lines of 80 bytes)
TARGET_PREFIXES = 256  # fan a pattern out until it has this many prefixes (or runs out of levels)
FANOUT_LEVELS = 3  # ... but descend at most this many levels below the pattern's fixed root


@dataclass(frozen=True)
class InputSpec:
    """One ``--input`` as the launcher checked it: everything a worker needs to expand it.

    ``root`` is the fsspec path (protocol stripped) to list or read; for a glob, the fixed part of
    the pattern up to its last ``/`` before the first wildcard, ``parts`` the pattern's components
    below it and ``regex`` fsspec's translation of the whole pattern.
    """

    index: int
    uri: str
    kind: str  # "glob" | "dir" | "file" | "txt" | "csv" | "parquet"
    root: str
    regex: str | None = None
    parts: tuple[str, ...] = ()
    header: tuple[str, ...] = ()  # csv: the column names; parquet: the columns to read
    size: int | None = None  # manifests: bytes at check time (the ranges are cut from the size workers see)

    @property
    def depth(self) -> int | None:
        """Levels below ``root`` a glob match lies at; None when unbounded (``**``)."""
        return None if self.kind == "dir" or "**" in self.parts else len(self.parts)

    def matches(self, path: str) -> bool:
        if self.kind == "dir":
            return _ext(path) in AUDIO_EXTENSIONS
        return _compiled(self.regex).match(path) is not None

    def viable(self, rel: Sequence[str]) -> bool:
        """Whether a directory ``rel`` (components below ``root``) may hold matches."""
        if self.kind == "dir":
            return True
        for i, name in enumerate(rel):
            if i >= len(self.parts) - 1:  # the last component names files, not directories
                return self.parts[-1] == "**"
            if self.parts[i] == "**":
                return True
            if not _compiled(glob_translate(self.parts[i])).match(name):
                return False
        return True


_REGEX_CACHE: dict[str, re.Pattern] = {}


def _compiled(regex: str | None) -> re.Pattern:
    if regex not in _REGEX_CACHE:
        _REGEX_CACHE[regex] = re.compile(regex)
    return _REGEX_CACHE[regex]


def _ext(path: str) -> str:
    return posixpath.splitext(path.rstrip("/"))[1].lower()


def filesystem(uri: str) -> fsspec.AbstractFileSystem:
    """The fsspec filesystem of ``uri`` (workers build it once per spec)."""
    return fsspec.core.url_to_fs(uri)[0]


# ------------------------------------------------------------------------------------------------
# Launcher: classify and check, bounded


def _ls(fs: fsspec.AbstractFileSystem, path: str) -> list[dict]:
    return sorted(fs.ls(path, detail=True), key=lambda e: e["name"])


def _step(
    spec: InputSpec, fs: fsspec.AbstractFileSystem, directory: str, rel: tuple[str, ...]
) -> tuple[list[dict], list[tuple[str, tuple[str, ...]]]]:
    """One ``ls`` of ``directory``: the files in it that match, and the subdirectories that may hold matches."""
    depth = spec.depth
    files, subdirs = [], []
    for entry in _ls(fs, directory):
        name = entry["name"]
        if entry["type"] == "directory":
            child = (*rel, name.rstrip("/").rsplit("/", 1)[-1])
            if (depth is None or len(child) < depth) and spec.viable(child):
                subdirs.append((name, child))
        elif spec.matches(name):
            files.append(entry)
    return files, subdirs


def _first_match(spec: InputSpec, fs: fsspec.AbstractFileSystem) -> str | None:
    """Depth-first search for one match, files of a directory before its subdirectories; stops at the first."""
    stack = [(spec.root.rstrip("/") or "/", ())]
    while stack:
        files, subdirs = _step(spec, fs, *stack.pop())
        if files:
            return files[0]["name"]
        stack += reversed(subdirs)
    return None


def _text_head(fs: fsspec.AbstractFileSystem, path: str) -> Iterator[str]:
    with fs.open(path, "rb") as f:
        for line in f:
            yield line.decode("utf-8", "surrogateescape")


def _check_manifest(index: int, uri: str, fs: fsspec.AbstractFileSystem, path: str, kind: str) -> InputSpec:
    try:
        size = fs.size(path)
        if kind == "parquet":
            with fs.open(path, "rb") as f:
                pf = pq.ParquetFile(f)  # reads the footer only
                names = pf.schema_arrow.names
                rows = pf.metadata.num_rows
            if "path" not in names:
                raise InputError(f"Manifest {uri} has no 'path' column (columns: {names}).")
            if not rows:
                raise InputError(f"--input {uri!r} matched no audio files (the manifest has no rows).")
            return InputSpec(index, uri, kind, path, header=("path", *[c for c in IDENTITY_COLUMNS if c in names]))
        lines = _text_head(fs, path)
        header: tuple[str, ...] = ()
        if kind == "csv":
            first = next(lines, "")
            header = tuple(next(csv.reader([first.lstrip("\ufeff")]), []))
            if "path" not in header:
                raise InputError(f"Manifest {uri} has no 'path' column (columns: {list(header)}).")
        for line in lines:  # stop at the first entry: the rest is read by workers
            if _entry(kind, header, line) is not None:
                return InputSpec(index, uri, kind, path, header=header, size=size)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"Manifest {uri} could not be read as {kind}: {type(e).__name__}: {e}") from e
    raise InputError(f"--input {uri!r} matched no audio files (the manifest has no entries).")


def _some_extensions() -> str:
    """The audio extensions, in a few words: the full list is long (``yamnet_beam.audio.AUDIO_EXTENSIONS``)."""
    common = [e for e in (".wav", ".flac", ".mp3", ".ogg", ".m4a") if e in AUDIO_EXTENSIONS]
    return f"{', '.join(common)} and {len(AUDIO_EXTENSIONS) - len(common)} more audio extensions"


def check_input(index: int, pattern: str) -> InputSpec:
    """Classifies ``pattern`` and proves it matches something; raises :class:`InputError` naming it if not.

    Costs at most a walk to the first match (one ``ls`` per directory on the way), a stat, or the
    first lines (footer) of a manifest; never the whole listing (unless nothing matches, which needs
    a full walk to prove).
    """
    uri = absolute_uri(pattern)
    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as e:
        raise InputError(f"--input {pattern!r}: {e}. Install the filesystem extra (e.g. yamnet-beam[gcp]).") from e
    no_match = InputError(
        f"--input {pattern!r} matched no audio files (directories are searched recursively for {_some_extensions()})."
    )
    if _GLOB_CHARS & set(path):
        first = min(path.find(c) for c in _GLOB_CHARS if c in path)
        cut = path.rfind("/", 0, first)
        root, rest = path[: cut + 1], path[cut + 1 :]
        spec = InputSpec(index, uri, "glob", root, glob_translate(path), tuple(rest.split("/")))
        if not fs.isdir(root.rstrip("/") or "/") or _first_match(spec, fs) is None:
            raise no_match
        return spec
    if fs.isdir(path):
        spec = InputSpec(index, uri, "dir", path.rstrip("/"))
        if _first_match(spec, fs) is None:
            raise no_match
        return spec
    if fs.isfile(path):
        ext = _ext(path)
        if ext in MANIFEST_EXTENSIONS:
            return _check_manifest(index, uri, fs, path, ext[1:])
        return InputSpec(index, uri, "file", path)
    raise InputError(f"--input {pattern!r} does not exist: no such file, directory or glob match.")


def check_inputs(patterns: Sequence[str]) -> list[InputSpec]:
    """One checked spec per ``--input``, in order (the order decides which repeat of a path is kept)."""
    patterns = list(patterns)
    if not patterns:
        raise InputError("No --input given: pass a file, directory, glob or manifest (may be repeated).")
    return [check_input(i, p) for i, p in enumerate(patterns)]


# ------------------------------------------------------------------------------------------------
# Workers: fan out, list, read manifests (Beam-free functions, wrapped by the DoFns below)


@dataclass(frozen=True)
class Prefix:
    """A directory to list on one worker, ``rel`` its components below the spec's root."""

    index: int
    path: str
    rel: tuple[str, ...]


@dataclass(frozen=True)
class Range:
    """A piece of a manifest: bytes ``[start, stop)`` of a text file, or one Parquet row group (``start``)."""

    index: int
    start: int
    stop: int


def fan_out(
    spec: InputSpec,
    fs: fsspec.AbstractFileSystem,
    target: int = TARGET_PREFIXES,
    levels: int = FANOUT_LEVELS,
    range_bytes: int = RANGE_BYTES,
) -> Iterator[tuple[tuple[int, int], InputFile] | Prefix | Range]:
    """Splits one input into independent pieces: files found on the way, prefixes to list, manifest ranges."""
    if spec.kind == "file":
        try:
            info = fs.info(spec.root)
        except FileNotFoundError:  # gone since the check: the decoder reports it in the file's row
            info = {}
        yield (spec.index, 0), from_info(user_uri(fs, spec.root), info) if info else InputFile(user_uri(fs, spec.root))
        return
    if spec.kind == "parquet":
        with fs.open(spec.root, "rb") as f:
            groups = pq.ParquetFile(f).metadata.num_row_groups
        yield from (Range(spec.index, g, g + 1) for g in range(groups))
        return
    if spec.kind in ("txt", "csv"):
        size = fs.size(spec.root)
        yield from (Range(spec.index, s, min(s + range_bytes, size)) for s in range(0, size, range_bytes))
        return
    frontier = [(spec.root.rstrip("/") or "/", ())]
    for _ in range(levels):
        if len(frontier) >= target:
            break
        below = []
        for directory, rel in frontier:
            files, subdirs = _step(spec, fs, directory, rel)
            yield from (((spec.index, 0), from_info(user_uri(fs, e["name"]), e)) for e in files)
            below += subdirs
        frontier = below
        if not frontier:
            return
    yield from (Prefix(spec.index, path, rel) for path, rel in frontier)


def list_prefix(spec: InputSpec, fs: fsspec.AbstractFileSystem, prefix: Prefix) -> Iterator[InputFile]:
    """Everything under ``prefix`` that matches ``spec``: one ``find`` (one paginated listing on object stores)."""
    depth = spec.depth
    maxdepth = None if depth is None else depth - len(prefix.rel)
    for name, info in fs.find(prefix.path, maxdepth=maxdepth, detail=True).items():
        if info.get("type") != "directory" and spec.matches(name):
            yield from_info(user_uri(fs, name), info)


def _lines(f, start: int, stop: int) -> Iterator[tuple[int, bytes]]:
    """``(offset, line)`` for each line that starts in ``[start, stop)``: every line in exactly one range."""
    if start > 0:
        f.seek(start - 1)
        f.readline()  # the rest of the line holding byte start-1 belongs to the previous range
        pos = f.tell()
    else:
        f.seek(0)
        pos = 0
    while pos < stop:
        line = f.readline()
        if not line:
            return
        yield pos, line
        pos += len(line)


def _number(value: Any, kind: type) -> Any:
    if value is None or value == "":
        return None
    if kind is float and isinstance(value, _dt.datetime):
        return value.timestamp()
    if kind is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return _dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return kind(value)


def _entry(kind: str, header: Sequence[str], line: str) -> dict[str, Any] | None:
    """One manifest line as ``{"path": ..., identity columns...}``, or None for blank lines and comments."""
    if kind == "txt":
        entry = line.strip()
        return {"path": entry} if entry and not entry.startswith("#") else None
    if not line.strip():
        return None
    fields = next(csv.reader([line.rstrip("\r\n")]))
    if len(fields) != len(header):
        raise InputError(
            f"CSV manifest line {line.strip()[:200]!r} has {len(fields)} fields, the header {len(header)}; "
            "fix the manifest (quoted values spanning lines are not supported: use .txt or .parquet)."
        )
    row = dict(zip(header, fields, strict=True))
    return row if row["path"] else None


def _to_input(spec: InputSpec, fs: fsspec.AbstractFileSystem, row: dict[str, Any]) -> InputFile:
    """A manifest row as an input: relative entries are relative to the manifest (as today's _read_manifest)."""
    entry = row["path"]
    if "://" in entry:
        try:
            entry_fs, entry_path = fsspec.core.url_to_fs(entry)
        except (ImportError, ValueError):  # unknown protocol, missing extra: the decoder says so in its io_error row
            return InputFile(entry)
    else:
        entry_fs = fs
        entry_path = entry if posixpath.isabs(entry) else posixpath.join(posixpath.dirname(spec.root), entry)
    return InputFile(
        user_uri(entry_fs, entry_path),
        _number(row.get("size_bytes"), int),
        _number(row.get("mtime"), float),
        row.get("etag") or None,
    )


def read_range(
    spec: InputSpec, fs: fsspec.AbstractFileSystem, rng: Range
) -> Iterator[tuple[tuple[int, int], InputFile]]:
    """The entries of one manifest range, each with its order ``(input index, byte offset or row number)``."""
    if spec.kind == "parquet":
        with fs.open(spec.root, "rb") as f:
            pf = pq.ParquetFile(f)
            row0 = sum(pf.metadata.row_group(g).num_rows for g in range(rng.start))
            for batch in pf.iter_batches(row_groups=[rng.start], columns=list(spec.header)):
                for row in batch.to_pylist():
                    if row["path"]:
                        yield (spec.index, row0), _to_input(spec, fs, row)
                    row0 += 1
        return
    with fs.open(spec.root, "rb") as f:
        for offset, raw in _lines(f, rng.start, rng.stop):
            if spec.kind == "csv" and offset == 0:
                continue  # the header
            # Names are bytes on Linux: undecodable ones survive as surrogate escapes, like os.listdir's.
            row = _entry(spec.kind, spec.header, raw.decode("utf-8", "surrogateescape"))
            if row is not None:
                yield (spec.index, offset), _to_input(spec, fs, row)


# ------------------------------------------------------------------------------------------------
# In-process: the same functions, run here (Beam-free callers, tests)


def expand_spec(spec: InputSpec, fs: fsspec.AbstractFileSystem | None = None) -> list[InputFile]:
    """Every file ``spec`` matches, listed here with the workers' functions: sorted by path, manifests in file order."""
    fs = fs or filesystem(spec.uri)
    found: list[InputFile] = []
    for item in fan_out(spec, fs):
        if isinstance(item, Prefix):
            found += list_prefix(spec, fs, item)
        elif isinstance(item, Range):
            found += (f for _, f in read_range(spec, fs, item))  # ranges come in file order
        else:
            found.append(item[1])
    return found if spec.kind in ("txt", "csv", "parquet") else sorted(found, key=lambda f: f.path)


def expand_input(pattern: str) -> list[InputFile]:
    """Matches one ``--input`` value in-process; raises :class:`InputError` naming it if it matches no file."""
    return expand_spec(check_input(0, pattern))


def match_inputs(patterns: Sequence[str]) -> list[InputFile]:
    """Expands every pattern in-process, in order, keeping the first occurrence of a path (as the job does)."""
    seen: dict[str, InputFile] = {}
    for spec in check_inputs(patterns):
        for f in expand_spec(spec):
            seen.setdefault(f.path, f)
    return list(seen.values())
