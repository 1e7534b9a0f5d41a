"""Every name in an output directory, and when a part is committed: readers and writers agree here.

``OUTPUT/frames/part-<id>[-s<segment>].parquet`` and ``OUTPUT/files/part-<id>.parquet`` are the tables;
the files part is the commit marker of the frames parts with its id. ``heads/<head>/`` (``apply``),
``clips/`` (``pool``), ``index/`` (``index``: ANN shards, each ``shard-<name>.usearch`` + ``.rows.arrow``, committed by
its ``.json``) and ``_similar_cache/`` are derived from frames/ and go with them; ``_tmp/`` holds
parts being written, ``_runs/<run_id>/`` a run's plan and summary, and ``_lease.json`` names the job
that holds the output (:mod:`.lease`). ``labels/`` holds people's window labels (``explore``, :mod:`.labels`):
append-only, and never removed by ``--mode overwrite`` (they are work no run can redo).
"""

from __future__ import annotations

from collections.abc import Iterable

FRAMES_DIR = "frames"
FILES_DIR = "files"
HEADS_DIR = "heads"  # OUTPUT/heads/<head name>/: a head applied to a finished output (``yamnet-beam apply``)
CLIPS_DIR = "clips"  # OUTPUT/clips/: the clip table (``yamnet-beam pool``)
INDEX_DIR = "index"  # OUTPUT/index/: the similarity index's shards (``yamnet-beam index``)
INDEX_SHARD_PREFIX = "shard-"
INDEX_VECTORS = ".usearch"  # the shard's USearch HNSW graph and vectors (memory-mapped by readers)
INDEX_ROWS = ".rows.arrow"  # the shard's key -> (path, frame, times, top label) rows (Arrow IPC, memory-mapped)
INDEX_COVERS = ".json"  # what the shard covers (parts and their fingerprints): written last, its commit marker
SIMILAR_CACHE_DIR = "_similar_cache"  # decoded embeddings for ``query similar`` (local outputs)
TMP_DIR = "_tmp"
RUNS_DIR = "_runs"  # _runs/<run_id>/plan.json and summary.json: what each run planned and did, written by the job
PLAN_FILE = "plan.json"
SUMMARY_FILE = "summary.json"
MANIFEST = "manifest.json"  # the last run's parameters, counts and times
LABELS_CSV = "labels.csv"  # the class names the run's scores are in
LABELS_DIR = "labels"  # OUTPUT/labels/labels-<session>.jsonl: window labels, one fsync'd JSON line each
LEASE = "_lease.json"  # the job holding the output (host, pid, start); see yamnet_beam.table.lease

# What yamnet-beam writes into an output and ``--mode overwrite`` removes: the tables, everything derived
# from them, and the runs' bookkeeping. Not the lease: the job that overwrites holds it.
OWNED = (
    FRAMES_DIR,
    FILES_DIR,
    HEADS_DIR,
    CLIPS_DIR,
    INDEX_DIR,
    SIMILAR_CACHE_DIR,
    TMP_DIR,
    RUNS_DIR,
    MANIFEST,
    LABELS_CSV,
)

PREFIX = "part-"
SUFFIX = ".parquet"
SEGMENT_MARK = "-s"  # frames/part-<id>-s00003.parquet: segment 3 of the long file committed by files/part-<id>


def run_dir(output: str, run_id: str) -> str:
    """``OUTPUT/_runs/<run_id>``: where a run's job leaves its plan and summary for the launcher."""
    return f"{output.rstrip('/')}/{RUNS_DIR}/{run_id}"


def part_name(directory: str, part_id: str) -> str:
    """``DIR/part-<id>.parquet``."""
    return f"{directory}/{PREFIX}{part_id}{SUFFIX}"


def part_id_of(path: str) -> str | None:
    """The part id in a part file's name, or None for any other file."""
    base = path.rstrip("/").rsplit("/", 1)[-1]
    if base.startswith(PREFIX) and base.endswith(SUFFIX):
        return base[len(PREFIX) : -len(SUFFIX)]
    return None


def marker_id(frames_id: str) -> str:
    """The files part that commits a frames part: itself, or for a segment, its file's part."""
    return frames_id.split(SEGMENT_MARK, 1)[0]


def committed_frames(frames_paths: Iterable[str], files_paths: Iterable[str]) -> list[str]:
    """The frames files whose commit marker (files part) exists: what readers may use.

    Anything else is the leftover of an interrupted commit, which the next run removes.
    """
    markers = {part_id_of(p) for p in files_paths}
    return [p for p in frames_paths if (pid := part_id_of(p)) is not None and marker_id(pid) in markers]
