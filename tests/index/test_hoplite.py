"""export-hoplite: the database opened the way perch-hoplite opens it (sqlite3 + USearch), same neighbours."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from tests.support.index_data import exact_table
from yamnet_beam.cli import main
from yamnet_beam.index.hoplite import HOPLITE_FILENAME, UINDEX_FILENAME


class PerchHopliteReader:
    """What ``SQLiteUSearchDB.create(path, readonly=True)`` and ``search`` do (perch-hoplite 1.0.2)."""

    def __init__(self, db_dir):
        sqlite3.register_converter("FLOAT_LIST", lambda b: np.frombuffer(b, dtype="<f8").tolist())
        self.db = sqlite3.connect(
            f"file:{db_dir / HOPLITE_FILENAME}?mode=ro", uri=True, detect_types=sqlite3.PARSE_DECLTYPES
        )
        self.metadata = {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM hoplite_metadata")}
        cfg = self.metadata["usearch_config"]
        assert cfg["dtype"] == "float16"  # perch-hoplite's USEARCH_DTYPES has only this
        from usearch.index import Index

        self.ui = Index(ndim=cfg["embedding_dim"], path=str(db_dir / UINDEX_FILENAME), view=True)

    def search(self, q: np.ndarray, k: int) -> list[tuple[str, int, float]]:
        """(filename, window id, score): USearch with IP returns 1 - inner product."""
        m = self.ui.search(q, count=k)
        out = []
        for key, d in zip(m.keys, m.distances, strict=True):
            (rec,) = self.db.execute("SELECT recording_id FROM windows WHERE id = ?", (int(key),)).fetchone()
            (name,) = self.db.execute("SELECT filename FROM recordings WHERE id = ?", (rec,)).fetchone()
            out.append((name, int(key), 1.0 - float(d)))
        return out

    def offsets(self, window_id: int) -> list[float]:
        return self.db.execute("SELECT offsets FROM windows WHERE id = ?", (window_id,)).fetchone()[0]


@pytest.fixture(scope="module")
def hoplite_db(index_source, tmp_path_factory):
    db = tmp_path_factory.mktemp("hoplite") / "db"
    assert main(["export-hoplite", str(index_source), "-o", str(db)]) == 0
    return db


def test_the_database_has_perch_hoplites_layout_and_yamnets_config(hoplite_db, index_source):
    r = PerchHopliteReader(hoplite_db)
    rows, _ = exact_table(index_source)
    assert len(r.ui) == len(rows) == r.db.execute("SELECT count(*) FROM windows").fetchone()[0]
    tables = {n for (n,) in r.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"hoplite_metadata", "deployments", "recordings", "windows", "annotations"} <= tables
    assert r.metadata["usearch_config"] == {
        "embedding_dim": 1024,
        "dtype": "float16",
        "metric_name": "IP",
        "expansion_add": 256,
        "expansion_search": 128,
    }
    assert r.metadata["model_config"]["model_key"] == "tfhub_model"
    assert r.metadata["model_config"]["model_config"]["sample_rate"] == 16000
    assert r.db.execute("SELECT count(*) FROM recordings").fetchone()[0] == len({p for p, _ in rows})


def test_nearest_neighbours_are_exact_searchs(hoplite_db, index_source):
    import pyarrow.parquet as pq

    from yamnet_beam.table.output import OutputDir

    r = PerchHopliteReader(hoplite_db)
    rows, m = exact_table(index_source)
    starts = np.concatenate(
        [
            pq.read_table(p, columns=["start_s"]).column("start_s").to_numpy()
            for p in OutputDir(str(index_source)).frame_files
        ]
    )
    hits = 0
    queries = np.random.default_rng(3).choice(len(rows), 50, replace=False)
    for i in queries:
        got = r.search(m[i].astype(np.float16), 10)
        sims = m @ m[i]
        kth = np.sort(sims)[::-1][9]
        for name, key, score in got:
            j = key - 1  # windows are numbered in the order the frames are stored
            assert rows[j][0] == name and r.offsets(key)[0] == pytest.approx(starts[j])
            assert score == pytest.approx(sims[j], abs=2e-3)
            hits += sims[j] >= kth - 1e-3
    assert hits / (10 * len(queries)) >= 0.95


def test_an_existing_database_needs_mode_overwrite(hoplite_db, index_source, capsys):
    before = (hoplite_db / HOPLITE_FILENAME).stat().st_mtime_ns
    assert main(["export-hoplite", str(index_source), "-o", str(hoplite_db)]) == 2
    assert "--mode overwrite" in capsys.readouterr().err
    assert (hoplite_db / HOPLITE_FILENAME).stat().st_mtime_ns == before
