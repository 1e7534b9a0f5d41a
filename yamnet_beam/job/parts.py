"""Output parts: the unit of work, of commit and of resume, and resume's rule.

Inputs are grouped into *parts* of a few files each, written and committed together
(:mod:`yamnet_beam.table.parts`). Part ids hash the part's inputs (path, size, mtime, etag) and the
parameter fingerprint, so a retried part rewrites the same two files (idempotent), and a run killed at any
moment loses at most the parts in flight: ``--mode resume`` skips every input already committed
(:func:`is_done`) with the same identity and fingerprint. No pipeline code: the logic is unit-tested alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from yamnet_beam.job.inputs import InputFile
from yamnet_beam.job.options import PART_FILES, PART_MB
from yamnet_beam.table.layout import SEGMENT_MARK
from yamnet_beam.table.schema import STATUS_OK


def fingerprint(params: Mapping[str, Any]) -> str:
    """A short hash of everything that changes the numbers: model SHA-256, framing, decoding, storage."""
    return hashlib.sha256(json.dumps(dict(params), sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Part:
    """Inputs processed and committed together."""

    id: str
    files: tuple[InputFile, ...]


@dataclass(frozen=True)
class Segment:
    """One piece of a long file, decoded and embedded on its own so long files spread over workers.

    Its frames go to ``frames/part-<part_id>-s<index>.parquet``; the file's single files row goes
    to ``files/part-<part_id>.parquet`` once every segment is done (the commit marker).
    ``start``/``stop`` are 16 kHz sample offsets (see :func:`yamnet_beam.framing.segment_bounds`).
    """

    file: InputFile
    part_id: str
    index: int
    count: int
    start: int
    stop: int | None
    first_frame: int

    @property
    def frames_name(self) -> str:
        return f"{self.part_id}{SEGMENT_MARK}{self.index:05d}"


def long_file_part_id(item: InputFile, fp: str) -> str:
    """The part id of a file that is split into segments: its own, independent of its old part."""
    return _part_id([item], fp + "/segmented")


def _part_id(files: Sequence[InputFile], fp: str) -> str:
    key = json.dumps([fp, [(f.path, f.size_bytes, f.mtime, f.etag) for f in files]], default=str)
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:20]


MIN_PARTS = 16  # small inputs are still cut into this many parts, so every worker gets some


def plan_parts(
    inputs: Iterable[InputFile],
    fp: str,
    max_files: int = PART_FILES,
    max_bytes: int = int(PART_MB * (1 << 20)),
    min_parts: int = MIN_PARTS,
) -> list[Part]:
    """Groups inputs in order into parts of at most ``max_files`` files and about ``max_bytes`` of input.

    Small parts lose less on a crash and spread better over workers; large ones make fewer, bigger
    Parquet files. A file larger than ``max_bytes`` gets a part of its own. A small input set is
    still cut into ``min_parts`` parts (when it has that many files): with one part, one worker
    would do everything (measured: 24 files in one part kept the second worker idle).
    """
    if max_files < 1 or max_bytes < 1:
        raise ValueError("max_files and max_bytes must be positive")
    inputs = list(inputs)
    max_files = min(max_files, max(1, -(-len(inputs) // min_parts)))
    parts, group, size = [], [], 0
    for f in inputs:
        fsize = f.size_bytes or 0
        if group and (len(group) >= max_files or size + fsize > max_bytes):
            parts.append(Part(_part_id(group, fp), tuple(group)))
            group, size = [], 0
        group.append(f)
        size += fsize
    if group:
        parts.append(Part(_part_id(group, fp), tuple(group)))
    return parts


BUCKET_PARTS = 8  # in-pipeline planning: about this many full parts per bucket, so few partial remainders


def part_shape(n: int, part_files: int, min_parts: int = MIN_PARTS) -> tuple[int, int]:
    """``(max_files, buckets)`` for ``n`` inputs: :func:`plan_parts`' small-input rule, ~BUCKET_PARTS parts a bucket."""
    max_files = min(part_files, max(1, -(-n // min_parts)))
    return max_files, max(1, -(-n // (BUCKET_PARTS * max_files)))


def bucket_of(path: str, buckets: int) -> int:
    """Stable across processes (``hash()`` is salted per process); raw bytes, so repeats share a bucket."""
    digest = hashlib.blake2b(os.fsencode(path), digest_size=8).digest()
    return int.from_bytes(digest, "big") % buckets


def cut_bucket(items: Iterable[tuple[Any, InputFile]], fp: str, max_files: int, max_bytes: int) -> list[Part]:
    """One bucket's parts: first occurrence per raw path (by order), sorted by the path's bytes, cut in order.

    The sort makes the result independent of the order a shuffle delivers the group in, so a retried
    bundle cuts the same parts with the same ids.
    """
    first: dict[str, tuple[Any, InputFile]] = {}
    for order, f in items:
        if f.path not in first or order < first[f.path][0]:
            first[f.path] = (order, f)
    files = sorted((f for _, f in first.values()), key=lambda f: os.fsencode(f.path))
    return plan_parts(files, fp, max_files, max_bytes, min_parts=1)


# Failures that may not happen again (network, a stalled mount, a bug since fixed): resume retries
# them. Other errors (corrupt, empty, unsupported, too long) are properties of the unchanged file.
TRANSIENT_ERRORS = frozenset({"io_error", "timeout", "internal"})


def _same(a: Any, b: Any) -> bool:
    """Identity fields compare equal when equal, or when either side is unknown (not recorded)."""
    return a is None or b is None or a == b


RESUME_COLUMNS = ["path", "status", "error_kind", "fingerprint", "size_bytes", "mtime", "etag"]


def is_done(row: Mapping[str, Any], item: InputFile, fp: str) -> bool:
    """Whether a committed files row already covers ``item``, so ``--mode resume`` skips it: resume's one rule.

    Done means: ok, or failed in a way the unchanged file would fail again (not a transient kind), under
    the same fingerprint, and the file's size/mtime/etag unchanged (unknown on either side counts as equal).
    """
    return (
        (row["status"] == STATUS_OK or row["error_kind"] not in TRANSIENT_ERRORS)
        and row["fingerprint"] == fp
        and _same(row["size_bytes"], item.size_bytes)
        and _same(row["mtime"], item.mtime)
        and _same(row["etag"], item.etag)
    )
