"""One output directory (local or any fsspec URL): its names, its committed parts and its run values.

:class:`OutputDir` is the one model of an output that every stage uses: the job commits into it,
resumes and clears it, ``apply`` and ``pool`` add derived tables, and the readers list it. Listing
and "the manifest, else the tables' Parquet metadata" are written here once.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from yamnet_beam import framing
from yamnet_beam.model.labels import Labels, LabelsError, load_class_map
from yamnet_beam.table.layout import (
    FILES_DIR,
    FRAMES_DIR,
    HEADS_DIR,
    LABELS_CSV,
    MANIFEST,
    OWNED,
    SUFFIX,
    TMP_DIR,
    committed_frames,
    marker_id,
    part_id_of,
)
from yamnet_beam.table.parts import parquet_options
from yamnet_beam.table.schema import TableError, parquet_file, read_metadata, read_table
from yamnet_beam.uris import is_remote, user_uri

SCAN_BATCH_ROWS = 8192


class OutputDir:
    """An output directory: what is there, what is committed, what the run recorded, and what to clean up."""

    def __init__(self, output: str):
        self.uri = output.rstrip("/") or output
        self.fs, root = fsspec.core.url_to_fs(output)
        self.root = root.rstrip("/") or "/"

    # ---- names

    @property
    def remote(self) -> bool:
        return is_remote(self.fs)

    def path(self, name: str) -> str:
        """The fsspec path of ``name`` (a layout name such as ``frames`` or ``heads/<head>``) in the output."""
        return f"{self.root.rstrip('/')}/{name}"

    def child_uri(self, name: str) -> str:
        """``name``'s URI as a user would type it (with its protocol, unless local)."""
        return user_uri(self.fs, self.path(name))

    def fs_path(self, uri: str) -> str:
        """A URI of this output's filesystem as a path for :attr:`fs`."""
        return self.fs._strip_protocol(uri) if self.remote else uri

    def head_dir(self, head_name: str) -> str:
        """Where ``apply`` writes a head's scores: ``heads/<head name>``."""
        return self.path(f"{HEADS_DIR}/{head_name}")

    # ---- listing

    def _ls(self, directory: str) -> list[str]:
        d = self.path(directory)
        # Workers commit parts from other processes: never trust this process's listing cache
        # (gcsfs and s3fs keep one per filesystem instance).
        self.fs.invalidate_cache(d)
        return self.fs.ls(d, detail=False) if self.fs.exists(d) else []

    def _parts(self, directory: str) -> dict[str, str]:
        return {pid: p for p in self._ls(directory) if (pid := part_id_of(p)) is not None}

    def has_results(self) -> list[str]:
        """Which tables already have files (for refusing to write over them)."""
        return [d for d in (FRAMES_DIR, FILES_DIR) if self._ls(d)]

    def committed_parts(self) -> set[str]:
        """Paths of the committed files parts (the commit markers)."""
        return set(self._parts(FILES_DIR).values())

    def committed_with_frames(self) -> list[tuple[str, tuple[str, ...]]]:
        """Each committed files part with the frames parts it commits (one listing of each directory)."""
        frames: dict[str, list[str]] = {}
        for fid, path in self._parts(FRAMES_DIR).items():
            frames.setdefault(marker_id(fid), []).append(path)
        return [(path, tuple(sorted(frames.get(pid, [])))) for pid, path in sorted(self._parts(FILES_DIR).items())]

    def _parquet_uris(self, directory: str) -> list[str]:
        return sorted(user_uri(self.fs, p) for p in self._ls(directory) if p.endswith(SUFFIX))

    @cached_property
    def file_files(self) -> list[str]:
        """URIs of the committed files parts, sorted (listed once, when first asked)."""
        return self._parquet_uris(FILES_DIR)

    @cached_property
    def frame_files(self) -> list[str]:
        """URIs of the committed frames parts, sorted; every frames part when files/ is absent (a hand-made output)."""
        frames = self._parquet_uris(FRAMES_DIR)
        return committed_frames(frames, self.file_files) if self.file_files else frames

    def head_parts(self, head_name: str) -> list[str]:
        """Paths of the parts ``apply`` wrote for a head (``heads/<head name>/part-*.parquet``), sorted."""
        return sorted(self._parts(f"{HEADS_DIR}/{head_name}").values())

    def read_parts(self, paths: Iterable[str], columns: Sequence[str] | None = None) -> list[pa.Table]:
        tables = []
        for p in sorted(paths):
            with self.fs.open(p, "rb") as f:
                tables.append(read_table(f, columns))
        return tables

    def scan(
        self, columns: Sequence[str], path_glob: str | None = None, batch_rows: int = SCAN_BATCH_ROWS
    ) -> Iterator[pa.RecordBatch]:
        """Record batches of ``columns`` from frames/, file by file, optionally only paths matching a glob."""
        return scan_parquet(self.fs, self.frame_files, columns, path_glob, batch_rows)

    # ---- what the run recorded

    @cached_property
    def manifest(self) -> dict[str, Any]:
        """The last finished run's ``manifest.json`` (empty while none finished)."""
        path = self.path(MANIFEST)
        return json.loads(self.fs.cat_file(path)) if self.fs.exists(path) else {}

    @cached_property
    def run_metadata(self) -> dict[str, Any]:
        """The run essentials stored in the tables' Parquet metadata (of the first committed part)."""
        parts = self.frame_files or self.file_files
        if not parts:
            return {}
        with self.fs.open(self.fs_path(parts[0]), "rb") as f:
            return read_metadata(pq.read_schema(f))

    def run_value(self, key: str, default: Any = None) -> Any:
        """A run's value: from the manifest, else from the tables' metadata (a run that did not finish)."""
        value = self.manifest.get(key)
        if value is None or value == "":
            value = self.run_metadata.get(key)
        return default if value is None else value

    @property
    def model_uri(self) -> str | None:
        return self.run_value("model_uri")

    @property
    def hop_samples(self) -> int:
        return int(self.run_value("hop_samples") or framing.HOP_SAMPLES)

    @property
    def hop_s(self) -> float:
        return self.hop_samples / framing.SAMPLE_RATE

    @cached_property
    def frame_schema(self) -> pa.Schema:
        """The frames table's schema (empty when no frames were written)."""
        if not self.frame_files:
            return pa.schema([])
        with self.fs.open(self.fs_path(self.frame_files[0]), "rb") as f:
            return pq.read_schema(f)

    @cached_property
    def labels(self) -> Labels:
        """Class names and MIDs from the output's own labels.csv (the run's labels, not today's)."""
        try:
            return load_class_map(self.child_uri(LABELS_CSV))
        except LabelsError as e:
            raise TableError(f"{self.uri} has no usable {LABELS_CSV} ({e}); was the run interrupted?") from e

    # ---- cleaning up

    def clear(self) -> None:
        """Removes every table, derived table, cache and run file yamnet-beam writes (``--mode overwrite``)."""
        for name in OWNED:
            target = self.path(name)
            if self.fs.exists(target):
                self.fs.rm(target, recursive=True)
        self.__dict__.pop("manifest", None)

    def remove_uncommitted(self) -> list[str]:
        """Deletes temp files and frames parts whose commit marker (files part) is missing; returns them."""
        removed = []
        tmp = self.path(TMP_DIR)
        if self.fs.exists(tmp):
            removed += self.fs.ls(tmp, detail=False)
            self.fs.rm(tmp, recursive=True)
        frames = list(self._parts(FRAMES_DIR).values())
        keep = set(committed_frames(frames, self._parts(FILES_DIR).values()))
        for path in frames:
            if path not in keep:
                self.fs.rm(path)
                removed.append(path)
        return removed

    def drop_rows(self, files_path: str, frames_paths: Sequence[str], paths: Iterable[str]) -> bool:
        """Rewrites one committed part without the rows of ``paths``: frames first, the files part (marker) last.

        Each rewrite is a temp file then a rename, so a crash in between leaves the marker still naming
        the path and the next resume drops it again (idempotent). Returns whether anything changed.
        """
        drop = pa.array(sorted(set(paths)), pa.string())
        changed = False
        for path in [*sorted(frames_paths), files_path]:
            if not self.fs.exists(path):
                continue
            with self.fs.open(path, "rb") as f:
                table = read_table(f)  # keeps the schema and its key-value metadata
            mask = pc.is_in(table.column("path"), value_set=drop)
            if not pc.any(mask).as_py():
                continue
            changed = True
            remaining = table.filter(pc.invert(mask))
            if remaining.num_rows == 0:
                self.fs.rm(path)
                continue
            tmp = self.path(f"{TMP_DIR}/rewrite-{part_id_of(path)}-{uuid.uuid4().hex}{SUFFIX}")
            self.fs.makedirs(self.path(TMP_DIR), exist_ok=True)
            with self.fs.open(tmp, "wb") as f:
                pq.write_table(remaining, f, **parquet_options(remaining.schema))
            self.fs.mv(tmp, path)
        return changed


def write_json(uri: str, value: Any) -> None:
    """Temp file then rename, so a reader never sees half a file and a retried bundle just rewrites it."""
    fs, path = fsspec.core.url_to_fs(uri)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    with fs.open(tmp, "w") as f:
        json.dump(value, f, sort_keys=True)
    fs.mv(tmp, path)


def read_json(uri: str) -> Any | None:
    """The JSON at ``uri``, or None when it is not there (yet)."""
    fs, path = fsspec.core.url_to_fs(uri)
    fs.invalidate_cache(path.rsplit("/", 1)[0])
    if not fs.exists(path):
        return None
    with fs.open(path, "r") as f:
        return json.load(f)


def glob_regex(glob: str) -> str:
    """A shell glob as an anchored RE2 regex (``*`` also crosses ``/``, as in DuckDB's GLOB)."""
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = glob.find("]", i + 2)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = glob[i + 1 : j]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "^" + "".join(out) + "$"


def scan_parquet(
    fs: fsspec.AbstractFileSystem,
    files: Sequence[str],
    columns: Sequence[str],
    path_glob: str | None = None,
    batch_rows: int = SCAN_BATCH_ROWS,
) -> Iterator[pa.RecordBatch]:
    """Streams non-empty record batches of ``columns`` from Parquet files, optionally only paths matching a glob."""
    regex = glob_regex(path_glob) if path_glob else None
    read_cols = list(dict.fromkeys([*columns, *(["path"] if regex else [])]))
    for uri in files:
        with fs.open(uri if "://" not in uri else fs._strip_protocol(uri), "rb") as f:
            for batch in parquet_file(f).iter_batches(batch_size=batch_rows, columns=read_cols):
                if regex:
                    batch = batch.filter(pc.match_substring_regex(batch.column("path"), regex)).select(list(columns))
                if batch.num_rows:
                    yield batch
