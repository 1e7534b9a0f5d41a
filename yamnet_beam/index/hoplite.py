"""An output's embeddings as a perch-hoplite database, the layout bioacousticians' agile-modelling tools open.

perch-hoplite (google-research/perch-hoplite, ``perch_hoplite/db/sqlite_usearch_impl.py``, 1.0.x) keeps a
directory with ``hoplite.sqlite`` (tables ``hoplite_metadata``, ``deployments``, ``recordings``, ``windows``,
``annotations``) and ``usearch.index`` (a USearch index whose keys are window ids). This writes that layout
directly, with plain sqlite3 and USearch: perch-hoplite itself cannot be installed beside this package
(it requires absl-py<2; MediaPipe, which ``export`` is tested with, requires absl-py 2.x).

What goes where: one deployment (``name`` the output, ``project`` "yamnet-beam"); one recording per stored
path (``filename`` the path as the run stored it); one window per frame (``offsets`` ``[start_s, end_s]``,
float64 as perch-hoplite stores them), keyed in ``usearch.index`` by the window id. Embeddings are stored as
unit vectors in float16 with perch-hoplite's default index settings (metric ``IP``, which on unit vectors is
the cosine YAMNet's embeddings need), but a denser graph (connectivity 32). Metadata: ``usearch_config``,
``model_config`` (perch-hoplite's YAMNet preset: ``tfhub_model``, 1024 dimensions, 16 kHz),
``audio_sources`` and ``yamnet_beam`` (where the rows came from: the output, its model's SHA-256, the hop).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from yamnet_beam.index.shards import unit_rows
from yamnet_beam.table import schema
from yamnet_beam.table.output import OutputDir

HOPLITE_FILENAME = "hoplite.sqlite"
UINDEX_FILENAME = "usearch.index"
DEPLOYMENT_PROJECT = "yamnet-beam"
BATCH_ROWS = 65536
# USearch's default 16 left clusters of near-duplicate frames unreachable (recall@10 0.73 through perch-hoplite's
# own search on the tests' output); 32, as the index's shards use, gives 1.0 there.
CONNECTIVITY = 32


def usearch_config(ndim: int = 1024) -> dict:
    """perch-hoplite's ``get_default_usearch_config``: the index it opens and extends."""
    return {
        "embedding_dim": ndim,
        "dtype": "float16",
        "metric_name": "IP",
        "expansion_add": 256,
        "expansion_search": 128,
    }


def model_config(ndim: int = 1024) -> dict:
    """perch-hoplite's YAMNet preset (``zoo/model_configs.py``), so its tools embed new audio comparably."""
    return {
        "model_key": "tfhub_model",
        "embedding_dim": ndim,
        "model_config": {
            "sample_rate": 16000,
            "model_url": "google/yamnet/tensorFlow2/yamnet",
            "embedding_index": 1,
            "logits_index": 0,
        },
        "logits_key": None,
        "logits_idxes": None,
    }


_TABLES = """
CREATE TABLE hoplite_metadata (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE deployments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, project TEXT NOT NULL,
    latitude REAL, longitude REAL, UNIQUE (name, project));
CREATE TABLE recordings (
    id INTEGER PRIMARY KEY AUTOINCREMENT, filename TEXT NOT NULL, datetime TEXT,
    deployment_id INTEGER REFERENCES deployments(id) ON DELETE CASCADE,
    UNIQUE (id, deployment_id), UNIQUE (filename, deployment_id));
CREATE TABLE windows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recording_id INTEGER NOT NULL REFERENCES recordings(id) ON DELETE CASCADE,
    offsets FLOAT_LIST NOT NULL, UNIQUE (id, recording_id, offsets));
CREATE TABLE annotations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recording_id INTEGER NOT NULL REFERENCES recordings(id) ON DELETE CASCADE,
    offsets FLOAT_LIST NOT NULL, label TEXT NOT NULL, label_type INTEGER NOT NULL, provenance TEXT NOT NULL,
    UNIQUE (id, recording_id, offsets));
CREATE INDEX idx_annotations ON annotations(recording_id, offsets, label, label_type, provenance);
CREATE INDEX idx_labels ON annotations(label, label_type, provenance);
CREATE INDEX idx_recordings_deployment_id ON recordings(deployment_id);
CREATE INDEX idx_windows_recording_id ON windows(recording_id);
"""


def _batches(out: OutputDir) -> Iterator[pa.RecordBatch]:
    for part in out.frame_files:
        with out.fs.open(out.fs_path(part), "rb") as f:
            yield from schema.parquet_file(f).iter_batches(
                batch_size=BATCH_ROWS, columns=["path", "start_s", "end_s", "embedding"]
            )


def export_hoplite(output: str, db_dir: str, threads: int = 1) -> int:
    """Writes ``db_dir`` (a local directory, replaced whole) from ``output``'s frames; returns the windows written.

    The graph is built on ``threads`` threads (0: all cores); on one, as by default, the same output always
    gives the same graph, so what perch-hoplite's search finds in it is reproducible.

    Written into a sibling temporary directory and renamed into place, so a failed export leaves no
    half database.
    """
    from usearch.index import Index

    out = OutputDir(output)
    if not out.frame_files:
        raise ValueError(f"{output} has no committed frames/ parts: pass the --output directory of a finished run")
    db_dir = os.path.abspath(db_dir)
    tmp = f"{db_dir}.tmp-{uuid.uuid4().hex[:8]}"
    os.makedirs(tmp)
    try:
        con = sqlite3.connect(os.path.join(tmp, HOPLITE_FILENAME))
        con.executescript(_TABLES)
        ndim = None
        index = None
        deployment = con.execute(
            "INSERT INTO deployments (name, project) VALUES (?, ?)", (out.uri, DEPLOYMENT_PROJECT)
        ).lastrowid
        recordings: dict[str, int] = {}
        window = 0
        for batch in _batches(out):
            m = schema.list_matrix(batch.column("embedding"))
            if index is None:
                ndim = m.shape[1]
                cfg = usearch_config(ndim)
                index = Index(  # the graph's connectivity is in the file: perch-hoplite opens any
                    ndim=ndim,
                    metric="ip",
                    dtype="f16",
                    connectivity=CONNECTIVITY,
                    expansion_add=cfg["expansion_add"],
                    expansion_search=cfg["expansion_search"],
                )
            rows = []
            for path, start, end in zip(
                batch.column("path").to_pylist(),
                batch.column("start_s").to_pylist(),
                batch.column("end_s").to_pylist(),
                strict=True,
            ):
                rec = recordings.get(path)
                if rec is None:
                    rec = con.execute(
                        "INSERT INTO recordings (filename, deployment_id) VALUES (?, ?)", (path, deployment)
                    ).lastrowid
                    recordings[path] = rec
                window += 1
                rows.append((window, rec, np.array([start, end], dtype="<f8").tobytes()))
            con.executemany("INSERT INTO windows (id, recording_id, offsets) VALUES (?, ?, ?)", rows)
            keys = np.arange(window - len(rows) + 1, window + 1, dtype=np.uint64)
            index.add(keys, unit_rows(m).astype(np.float16), threads=threads)
        metadata = {
            "usearch_config": usearch_config(ndim),
            "model_config": model_config(ndim),
            "audio_sources": {
                "audio_globs": [
                    {
                        "dataset_name": DEPLOYMENT_PROJECT,
                        "base_path": "",
                        "file_glob": "*",
                        "min_audio_len_s": 0.0,
                        "target_sample_rate_hz": 16000,
                        "shard_len_s": None,
                        "max_shards_per_file": None,
                    }
                ]
            },
            "yamnet_beam": {
                "output": out.uri,
                "model_sha256": out.run_value("model_sha256", ""),
                "hop_s": out.hop_s,
                "embedding": "unit length (cosine = inner product), float16",
            },
        }
        con.executemany(
            "INSERT INTO hoplite_metadata (key, value) VALUES (?, ?)",
            [(k, json.dumps(v, sort_keys=True)) for k, v in metadata.items()],
        )
        con.commit()
        con.close()
        index.save(os.path.join(tmp, UINDEX_FILENAME))
        if os.path.exists(db_dir):
            shutil.rmtree(db_dir)
        os.replace(tmp, db_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return window
