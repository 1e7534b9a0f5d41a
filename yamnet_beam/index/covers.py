"""What each index shard covers, whether it is current, and which groups of parts still need a shard.

A shard is current while every frames part it covers is still committed with the fingerprint it had when
the shard was built (size and modification time, from one listing of ``frames/``): ``run --mode resume``
rewrites a part in place, which changes its fingerprint, so a shard holding rows of the replaced part is
never served. Shards are named by the hash of what they cover and how they were built, and parts are
grouped the same way every time, so a killed ``index`` job run again plans, and builds, the same shards.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from yamnet_beam.table.layout import (
    FRAMES_DIR,
    INDEX_COVERS,
    INDEX_DIR,
    INDEX_ROWS,
    INDEX_SHARD_PREFIX,
    INDEX_VECTORS,
    committed_frames,
    part_id_of,
)
from yamnet_beam.table.output import OutputDir, read_json
from yamnet_beam.uris import mtime_of

SHARD_FRAMES = 262_144  # frames per shard (groups of parts): see benchmarks/index_bench.py and the README
PRECISIONS = ("f16", "i8")


@dataclass(frozen=True)
class BuildParams:
    """How a shard is built: what a query needs to know and what a rebuild must match."""

    precision: str = "f16"  # f16: recall@10 0.999 on real frames; i8: half the disk, recall 0.98
    # HNSW edges per node and candidates kept while inserting. USearch's defaults (16, 128) left clusters of
    # near-duplicate frames (a steady tone) unreachable from others: a speech frame found 0 of its 10 nearest.
    connectivity: int = 32
    expansion_add: int = 256

    def check(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.connectivity < 2 or self.expansion_add < 1:
            raise ValueError("connectivity must be >= 2 and expansion_add >= 1")


@dataclass(frozen=True)
class Part:
    """A committed frames part: its file name, URI and fingerprint (rows when known)."""

    name: str
    uri: str
    fingerprint: str
    rows: int = -1


@dataclass(frozen=True)
class Shard:
    """One shard's ``.json``: its name, the parts it covers in key order, and how it was built."""

    name: str
    parts: tuple[tuple[str, str, int], ...]  # (part file name, fingerprint, rows), in key order
    params: BuildParams = field(default_factory=BuildParams)
    ndim: int = 1024

    @property
    def rows(self) -> int:
        return sum(r for _, _, r in self.parts)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "parts": [list(p) for p in self.parts],
            "params": asdict(self.params),
            "ndim": self.ndim,
        }

    @classmethod
    def from_json(cls, d: dict) -> Shard:
        parts = tuple((str(n), str(f), int(r)) for n, f, r in d["parts"])
        return cls(str(d["name"]), parts, BuildParams(**d["params"]), int(d.get("ndim", 1024)))


def fingerprint(info: dict) -> str:
    """A part's identity for staleness: its size and modification time (what a rewrite changes)."""
    stamp = f"{info.get('size')}-{mtime_of(info)}".encode()
    return hashlib.sha256(stamp).hexdigest()[:16]


def index_dir(out: OutputDir) -> str:
    return out.path(INDEX_DIR)


def shard_file(out: OutputDir, name: str, suffix: str) -> str:
    """``OUTPUT/index/shard-<name><suffix>`` as a path of the output's filesystem."""
    return f"{index_dir(out)}/{INDEX_SHARD_PREFIX}{name}{suffix}"


def committed_parts(out: OutputDir) -> list[Part]:
    """The committed frames parts with their fingerprints, from one listing of ``frames/`` (sorted by name)."""
    d = out.path(FRAMES_DIR)
    out.fs.invalidate_cache(d)
    infos = {i["name"]: i for i in out.fs.ls(d, detail=True)} if out.fs.exists(d) else {}
    files = out.committed_parts()
    keep = committed_frames(list(infos), files) if files else [p for p in infos if part_id_of(p)]  # hand-made
    parts = [
        Part(p.rsplit("/", 1)[-1], out.child_uri(f"{FRAMES_DIR}/{p.rsplit('/', 1)[-1]}"), fingerprint(infos[p]))
        for p in keep
    ]
    return sorted(parts, key=lambda p: p.name)


def read_shards(out: OutputDir) -> list[Shard]:
    """Every committed shard (one whose ``.json`` exists), sorted by name."""
    d = index_dir(out)
    out.fs.invalidate_cache(d)
    if not out.fs.exists(d):
        return []
    found = []
    for p in sorted(out.fs.ls(d, detail=False)):
        base = p.rsplit("/", 1)[-1]
        if base.startswith(INDEX_SHARD_PREFIX) and base.endswith(INDEX_COVERS):
            value = read_json(out.fs.unstrip_protocol(p) if out.remote else p)
            if value is not None:
                found.append(Shard.from_json(value))
    return found


@dataclass
class Status:
    """The index against the table now: current shards, stale ones, and the parts no current shard covers."""

    current: list[Shard]
    stale: list[Shard]
    uncovered: list[Part]
    parts: list[Part]

    def describe(self) -> str:
        if not self.current:
            what = "exact: no index" if not self.stale else f"exact: the index's {len(self.stale)} shards are stale"
            return f"{what} ({len(self.parts)} parts)"
        precision = ",".join(sorted({s.params.precision for s in self.current}))
        covered = len(self.parts) - len(self.uncovered)
        text = f"index: {len(self.current)} shards ({precision}) over {covered} parts"
        if self.uncovered:
            text += f" + exact: {len(self.uncovered)} parts"
        if self.stale:
            text += f" ({len(self.stale)} stale shards ignored: run yamnet-beam index)"
        return text


def status(out: OutputDir, shards: Sequence[Shard] | None = None) -> Status:
    """Splits the shards into current and stale, and lists the committed parts no current shard covers."""
    parts = committed_parts(out)
    now = {p.name: p.fingerprint for p in parts}
    current, stale, covered = [], [], set()
    for s in read_shards(out) if shards is None else shards:
        if all(now.get(name) == fp for name, fp, _ in s.parts) and not covered & {n for n, _, _ in s.parts}:
            current.append(s)
            covered |= {n for n, _, _ in s.parts}
        else:
            stale.append(s)
    return Status(current, stale, [p for p in parts if p.name not in covered], parts)


def shard_name(parts: Sequence[Part], params: BuildParams) -> str:
    """The hash of what a shard covers and how it is built: the same group always gets the same name."""
    key = json.dumps([[p.name, p.fingerprint] for p in parts] + [asdict(params)], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def plan_groups(parts: Sequence[Part], uncovered: Sequence[Part], shard_frames: int) -> list[list[Part]]:
    """Groups of uncovered parts of about ``shard_frames`` rows, each of consecutive parts.

    Grouping restarts at every covered part, so parts that were planned together (and some of whose groups
    got built) are grouped the same way when the job runs again. ``uncovered`` must carry row counts.
    """
    todo = {p.name: p for p in uncovered}
    groups: list[list[Part]] = []
    group: list[Part] = []
    rows = 0
    for p in parts:
        q = todo.get(p.name)
        if q is None or (group and rows + q.rows > shard_frames):
            if group:
                groups.append(group)
            group, rows = [], 0
        if q is not None:
            group.append(q)
            rows += q.rows
    if group:
        groups.append(group)
    return groups


def shard_files(name: str) -> tuple[str, str, str]:
    """The three file names of a shard: vectors, rows, covers (the last written, its commit marker)."""
    return tuple(f"{INDEX_SHARD_PREFIX}{name}{s}" for s in (INDEX_VECTORS, INDEX_ROWS, INDEX_COVERS))
