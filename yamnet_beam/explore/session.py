"""The explorer's work, without the web: search an output by class or by example, describe and cut windows,
store labels, train a head on them in the background and re-rank every frame with it. Usable from a notebook:
``Explorer(OUTPUT).search_class("Dog")``.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from yamnet_beam import framing
from yamnet_beam.analysis import query as q
from yamnet_beam.analysis import similar as sim
from yamnet_beam.analysis.output import Output, QueryError, open_output, sql_table
from yamnet_beam.errors import UserError
from yamnet_beam.explore.media import SignalCache, clip_bounds, spectrogram_png, wav_bytes
from yamnet_beam.model.head import Head, load_head
from yamnet_beam.table import labels as lab
from yamnet_beam.table.schema import list_matrix

_LOG = logging.getLogger(__name__)
PAGE = 20
TOP_LABELS = 3
RANK_MODES = ("top", "margin")
MATRIX_BYTES_PER_FRAME = (1024 + 521) * 4 + 120  # FrameMatrix: float32 embedding and scores, the row columns
MATRIX_MEMORY_SHARE = 0.5  # of the memory available when the explorer starts


def available_memory() -> int:
    """Bytes of memory the system can give without swapping (Linux ``MemAvailable``; else free pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


class Closing(QueryError):
    """The explorer is stopping: background work ends early."""


class NotServed(UserError, LookupError):
    """A path the output does not list (files/ with status ok): never read."""


@dataclass
class Hit:
    path: str
    frame: int
    start_s: float
    end_s: float
    score: float


class FrameMatrix:
    """Every frame's row (path, frame, start_s, end_s), YAMNet scores (class-major float32, so one class is one
    contiguous read) and embedding (float32: numpy's float16 arithmetic is slower than the matrix product) in
    memory: class search, training and re-ranking without a scan. About 6 KB a frame (6 GB for a million);
    loaded once, in the background, when the explorer starts."""

    def __init__(self, out: Output, stop: threading.Event | None = None):
        paths, frames, starts, ends, embs, scores = [], [], [], [], [], []
        for b in out.scan(["path", "frame", "start_s", "end_s", "scores", "embedding"]):
            if stop is not None and stop.is_set():  # the explorer is closing: leave Arrow before the exit
                raise Closing("the explorer stopped while loading the frames")
            paths.append(b.column("path"))
            frames.append(b.column("frame").to_numpy())
            starts.append(b.column("start_s").to_numpy())
            ends.append(b.column("end_s").to_numpy())
            embs.append(list_matrix(b.column("embedding")).astype(np.float32))
            scores.append(list_matrix(b.column("scores")).astype(np.float32, copy=False).T.copy())
        self.paths = np.asarray(pa.chunked_array(paths, pa.string()).to_pylist(), dtype=object)
        self.frames = np.concatenate(frames) if frames else np.zeros(0, np.int64)
        self.starts = np.concatenate(starts) if starts else np.zeros(0)
        self.ends = np.concatenate(ends) if ends else np.zeros(0)
        self.emb = np.concatenate(embs) if embs else np.zeros((0, 1024), np.float32)
        self.class_scores = np.concatenate(scores, axis=1) if scores else np.zeros((0, 0), np.float32)
        self._runs: dict[str, list[tuple[int, int, int]]] = {}  # path -> (first frame, first row, rows) per run
        if len(self.paths):
            cuts = np.r_[0, np.flatnonzero(self.paths[1:] != self.paths[:-1]) + 1, len(self.paths)]
            for a, b in zip(cuts[:-1], cuts[1:], strict=True):
                self._runs.setdefault(self.paths[a], []).append((int(self.frames[a]), int(a), int(b - a)))

    def row(self, path: str, frame: int) -> int | None:
        """The matrix row of a stored frame (frames of a file are consecutive within each run of rows)."""
        for first, at, count in self._runs.get(path, ()):
            i = at + frame - first
            if 0 <= frame - first < count and self.frames[i] == frame:
                return i
        return None

    def windows(self, paths: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """What :func:`yamnet_beam.customize.windows.frame_table` reads from the output, from memory."""
        out = {}
        for p in set(paths):
            rows = np.concatenate([np.arange(at, at + n) for _, at, n in self._runs.get(p, ())] or [np.zeros(0, int)])
            if len(rows):
                rows = rows[np.argsort(self.frames[rows], kind="stable")]
                out[p] = (self.starts[rows], self.starts[rows] + framing.WINDOW_SECONDS, self.emb[rows])
        return out

    def top(self, values: np.ndarray, minimum: float, count: int) -> np.ndarray:
        """Indices of the ``count`` highest ``values`` >= ``minimum``, ordered by value (descending), path, frame."""
        idx = np.flatnonzero(values >= minimum)
        if len(idx) > count:
            cut = np.partition(values[idx], len(idx) - count)[len(idx) - count]  # ties at the cut stay in
            idx = idx[values[idx] >= cut]
        order = np.lexsort((self.frames[idx], self.paths[idx], -values[idx]))
        return idx[order][:count]

    def scores(self, head: Head, index: int, chunk: int = 65536) -> np.ndarray:
        """The head's score of one class for every frame (float32 forward pass: for ranking, not for storing)."""
        layers = [(w.astype(np.float32), b.astype(np.float32)) for w, b in head.layers]
        out = np.empty(len(self.emb), np.float32)
        for i in range(0, len(self.emb), chunk):
            z = self.emb[i : i + chunk]
            for k, (w, b) in enumerate(layers):
                z = z @ w + b
                if k < len(layers) - 1:
                    z = np.maximum(z, 0)
            if head.activation == "softmax":
                z = np.exp(z - z.max(axis=1, keepdims=True))
                out[i : i + chunk] = z[:, index] / z.sum(axis=1)
            else:
                out[i : i + chunk] = 1.0 / (1.0 + np.exp(-z[:, index]))
        return out


@dataclass
class Ranking:
    """A trained head's order over every unlabelled frame."""

    head_dir: str
    cls: str
    mode: str
    order: np.ndarray  # indices into the FrameMatrix
    scores: np.ndarray  # the head's score of the class, per frame of the matrix
    threshold: float


class Explorer:
    def __init__(self, output: str, head_dir: str | None = None, model_uri: str | None = None, preload: bool = True):
        self.out = open_output(output)
        if self.out.remote:
            raise UserError(f"explore works on a local output; copy {output} here first")
        self.head = load_head(head_dir) if head_dir else None
        self.model_uri = model_uri
        self.store = lab.LabelStore(self.out.root)
        files = sql_table(self.out.con, "SELECT path, duration_s FROM files WHERE status = 'ok' AND frames > 0")
        self.durations: dict[str, float] = dict(
            zip(files.column("path").to_pylist(), files.column("duration_s").to_pylist(), strict=True)
        )
        frames = sum(sql_table(self.out.con, "SELECT frames FROM files WHERE status = 'ok'").column(0).to_pylist())
        self.matrix_bytes = int(frames or 0) * MATRIX_BYTES_PER_FRAME
        self.memory_budget = int(available_memory() * MATRIX_MEMORY_SHARE)
        self.signals = SignalCache(self._decode)
        self._vectors: dict[str, sim.QueryVector] = {}
        self._matrix: FrameMatrix | None = None
        self._lock = threading.Lock()
        self._sql = threading.RLock()  # one DuckDB connection, many server threads: one query at a time
        self.job: dict[str, Any] = {"state": "idle"}
        self.ranking: Ranking | None = None
        self.round = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        if preload and self.matrix_bytes <= self.memory_budget:  # class search uses SQL until then
            self._start(self._preload)

    # ---- what may be read

    def served(self, path: str) -> str:
        """``path`` if the output lists it as decoded (files/ status ok); else :class:`NotServed`."""
        if path not in self.durations:
            raise NotServed(f"not a file of this output: {path!r}")
        return path

    def _decode(self, path: str) -> np.ndarray:
        from yamnet_beam.audio import decode_file

        return decode_file(self.served(path))[0]

    # ---- search

    def classes(self) -> dict[str, list[str]]:
        return {"audioset": list(self.out.labels.names), "head": list(self.head.classes) if self.head else []}

    def search_class(self, cls: str, threshold: float = 0.0, offset: int = 0, n: int = PAGE) -> dict:
        """Windows ranked by one class's score (YAMNet's, or the ``--head`` head's when it has that class)."""
        table, column = "frames", "scores"
        if self.head is not None and cls.strip().lower() in [c.lower() for c in self.head.classes]:
            index = q.resolve_head_class(self.head, cls)
            with self._sql:
                table = q.head_view(self.out, self.head)
            column, name = "head_scores", self.head.classes[index]
        else:
            index = q.resolve_class(self.out.labels, cls)
            name = self.out.labels.names[index]
            m = self._matrix
            if m is not None:
                values = m.class_scores[index]
                sel = m.top(values, float(threshold), offset + n + 1)[offset:]
                hits = [Hit(m.paths[i], int(m.frames[i]), m.starts[i], m.ends[i], float(values[i])) for i in sel]
                return self._page(hits, n, offset, f"class {name}" + (f" >= {threshold:g}" if threshold else ""),
                                  "scores (in memory)")  # fmt: skip
        sql = (
            f"SELECT path, frame, start_s, start_s + {framing.WINDOW_SECONDS} AS end_s, {column}[{index + 1}] AS score"
            f" FROM {table}"
            f" WHERE {column}[{index + 1}] >= $t ORDER BY score DESC, path, frame LIMIT $n OFFSET $o"
        )
        with self._sql:
            t = sql_table(self.out.con, sql, {"t": float(threshold), "n": n + 1, "o": int(offset)})
        hits = [Hit(r["path"], r["frame"], r["start_s"], r["end_s"], r["score"]) for r in t.to_pylist()]
        return self._page(hits, n, offset, f"class {name}" + (f" >= {threshold:g}" if threshold else ""), "scores")

    def query_vector(self, spec: str) -> sim.QueryVector:
        """``PATH:FRAME`` of a stored frame, ``FILE[:SECONDS]`` of any audio file, or ``upload:<id>``."""
        if spec in self._vectors:
            return self._vectors[spec]
        path, sep, idx = spec.rpartition(":")
        if sep and path in self.durations and idx.isdigit():
            vec = sim.frame_vector(self.out, path, int(idx))
        elif spec.startswith("upload:"):
            raise QueryError("that upload is gone (the explorer was restarted): upload the clip again")
        else:
            vec = sim.file_vector(self.out, *sim.parse_file_ref(spec), model_uri=self.model_uri)
        self._vectors[spec] = vec
        return vec

    def upload(self, name: str, data: bytes) -> str:
        """Embeds an uploaded clip with the run's model (mean of its frames); returns its query spec."""
        suffix = os.path.splitext(re.sub(r"[^\w.]", "_", name or ""))[1][:10] or ".wav"
        with tempfile.TemporaryDirectory() as d:
            tmp = os.path.join(d, "upload" + suffix)
            with open(tmp, "wb") as f:
                f.write(data)
            with self._sql:
                vec = sim.file_vector(self.out, tmp, model_uri=self.model_uri)
        spec = f"upload:{secrets.token_hex(4)}"
        self._vectors[spec] = sim.QueryVector(vec.vector, f"uploaded {name!r}")
        return spec

    def search_example(self, spec: str, offset: int = 0, n: int = PAGE) -> dict:
        with self._sql:
            vec = self.query_vector(spec)
            t = sim.similar(self.out, vec, k=offset + n + 1)
        method = (t.schema.metadata or {}).get(b"search", b"exact").decode()
        rows = t.to_pylist()[offset:]
        hits = [Hit(r["path"], r["frame"], r["start_s"], r["end_s"], r["similarity"]) for r in rows]
        return self._page(hits, n, offset, f"like {vec.source}", method)

    def _page(self, hits: list[Hit], n: int, offset: int, query: str, method: str) -> dict:
        more = len(hits) > n
        hits = hits[:n]
        tops = self._top_labels(hits)
        judged: dict[tuple, dict[str, str]] = {}
        for x in self._latest():
            judged.setdefault(x.key()[:3], {})[x.cls] = x.label
        items = [
            {
                "path": h.path,
                "frame": int(h.frame),
                "start_s": float(h.start_s),
                "end_s": float(h.end_s),
                "score": float(h.score),
                "top": tops.get((h.path, int(h.frame)), []),
                "label": judged.get((h.path, round(float(h.start_s), 6), round(float(h.end_s), 6)), {}),
            }
            for h in hits
        ]
        return {"query": query, "method": method, "offset": offset, "more": more, "items": items}

    def _top_labels(self, hits: list[Hit]) -> dict[tuple[str, int], list]:
        if not hits:
            return {}
        names = np.asarray(self.out.labels.names, dtype=object)
        m = self._matrix
        rows = [m.row(h.path, int(h.frame)) for h in hits] if m is not None else [None]
        if None not in rows:
            block = m.class_scores[:, rows].T  # [hits, classes]
            top = np.argsort(-block, axis=1, kind="stable")[:, :TOP_LABELS]
            return {
                (h.path, int(h.frame)): [[names[j], round(float(block[k, j]), 3)] for j in top[k]]
                for k, h in enumerate(hits)
            }
        paths = sorted({h.path for h in hits})
        frames = sorted({int(h.frame) for h in hits})
        with self._sql:
            t = sql_table(
                self.out.con,
                "SELECT path, frame, scores FROM frames WHERE list_contains($p, path) AND list_contains($f, frame)",
                {"p": paths, "f": frames},
            )
        m = list_matrix(t.column("scores")) if t.num_rows else np.zeros((0, len(names)))
        top = np.argsort(-m, axis=1, kind="stable")[:, :TOP_LABELS]
        out = {}
        for i, (p, f) in enumerate(zip(t.column("path").to_pylist(), t.column("frame").to_pylist(), strict=True)):
            out[(p, int(f))] = [[names[j], round(float(m[i, j]), 3)] for j in top[i]]
        return out

    # ---- windows

    def clip(self, path: str, start_s: float, end_s: float) -> tuple[np.ndarray, float, float]:
        signal = self.signals.get(self.served(path))
        a, b = clip_bounds(start_s, end_s, len(signal) / framing.SAMPLE_RATE)
        return signal[int(round(a * framing.SAMPLE_RATE)) : int(round(b * framing.SAMPLE_RATE))], a, b

    def audio(self, path: str, start_s: float, end_s: float) -> bytes:
        return wav_bytes(self.clip(path, start_s, end_s)[0])

    def spectrogram(self, path: str, start_s: float, end_s: float) -> bytes:
        x, a, _ = self.clip(path, start_s, end_s)
        return spectrogram_png(x, start_s - a, end_s - a)

    # ---- labels

    def add_label(self, path: str, start_s: float, end_s: float, cls: str, label: str, query: str = "") -> None:
        self.served(path)
        self.store.append([lab.WindowLabel(path, float(start_s), float(end_s), cls.strip(), label, query, time.time())])

    def _latest(self) -> list[lab.WindowLabel]:
        return lab.latest(lab.read_labels(self.store.dir))

    def labels_csv(self) -> str:
        return lab.to_csv(self._latest())

    # ---- train and re-rank

    def matrix(self) -> FrameMatrix:
        with self._lock:
            if self._matrix is None:
                if self.matrix_bytes > self.memory_budget:  # say so before filling the memory, not after
                    gb = 1024**3
                    raise QueryError(
                        f"training and re-ranking hold every frame in memory: {self.matrix_bytes / gb:.1f} GB for "
                        f"this output, over half of the {2 * self.memory_budget / gb:.1f} GB available; train on "
                        "the labels with `yamnet-beam train OUTPUT --labels OUTPUT/labels` and `apply` instead"
                    )
                self._matrix = FrameMatrix(self.out, self._stop)
            return self._matrix

    def _start(self, target, *args) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def _preload(self) -> None:
        try:
            self.matrix()
        except Closing:
            pass

    def close(self, timeout_s: float = 60.0) -> None:
        """Stops the background work and waits for it (up to ``timeout_s``): a thread still inside Arrow when
        the interpreter exits aborts the process ("terminate called without an active exception")."""
        self._stop.set()
        end = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))

    def start_training(self, cls: str, mode: str = "top", head_type: str = "linear") -> dict:
        if mode not in RANK_MODES:
            raise QueryError(f"mode must be one of {', '.join(RANK_MODES)}, got {mode!r}")
        if self.job.get("state") == "running":
            raise QueryError("a head is being trained; wait for it")
        self.round += 1
        self.job = {"state": "running", "step": "reading labels", "class": cls, "round": self.round}
        self._start(self._train, cls.strip(), mode, head_type)
        return self.job

    def _train(self, cls: str, mode: str, head_type: str) -> None:
        from yamnet_beam.customize.train import train

        try:
            labels = [x for x in self._latest() if x.cls == cls]
            heads = os.path.join(self.store.dir, "heads")
            slug = re.sub(r"[^\w-]+", "_", cls).strip("_") or "class"
            name = f"{slug}-{time.strftime('%Y%m%dT%H%M%S')}-r{self.round}"
            os.makedirs(heads, exist_ok=True)
            csv_path = os.path.join(heads, f"{name}.labels.csv")
            with open(csv_path, "w", encoding="utf-8") as f:
                f.write(lab.to_csv(labels))
            self.job["step"] = f"cross-validating a {head_type} head on {len(labels)} labels"
            head_dir = os.path.join(heads, name)
            source = self.matrix().windows  # the frames in memory, not a scan of the output
            head = train(self.out.root, csv_path, head_dir, head_type=head_type, folds=5, frame_source=source)
            self.job["step"] = "scoring every frame"
            self.ranking = self._rank(head, head_dir, cls, mode, labels)
            clip = head.metrics.get("clip", {})
            self.job.update(
                state="done",
                step="done",
                head_dir=head_dir,
                metrics={k: clip[k] for k in ("accuracy", "macro_f1") if k in clip}
                | {"per_class": clip.get("per_class", {}), "windows": head.metrics.get("windows")},
                threshold=self.ranking.threshold,
            )
        except Closing as e:
            self.job.update(state="error", step="stopped", error=str(e))
        except Exception as e:  # shown in the page; the server goes on
            _LOG.warning("training failed: %s", e, exc_info=not isinstance(e, UserError))
            self.job.update(state="error", step="failed", error=str(e))

    def _rank(self, head: Head, head_dir: str, cls: str, mode: str, labels: list[lab.WindowLabel]) -> Ranking:
        index = head.classes.index(cls)
        m = self.matrix()
        scores = m.scores(head, index)
        labelled = {(x.path, round(x.start_s, 6)) for x in labels}
        keep = np.array([(p, round(float(s), 6)) not in labelled for p, s in zip(m.paths, m.starts, strict=True)])
        idx = np.flatnonzero(keep)
        threshold = float(head.thresholds[index])
        key = -scores[idx] if mode == "top" else np.abs(scores[idx] - threshold)
        order = idx[np.argsort(key, kind="stable")]
        return Ranking(head_dir, cls, mode, order, scores, threshold)

    def reranked(self, offset: int = 0, n: int = PAGE, mode: str | None = None) -> dict:
        r = self.ranking
        if r is None:
            raise QueryError("train a head first (the Train button)")
        if mode and mode != r.mode:
            idx = r.order
            key = -r.scores[idx] if mode == "top" else np.abs(r.scores[idx] - r.threshold)
            r.order, r.mode = idx[np.argsort(key, kind="stable")], mode
        m = self.matrix()
        sel = r.order[offset : offset + n + 1]
        hits = [
            Hit(m.paths[i], int(m.frames[i]), float(m.starts[i]), float(m.ends[i]), float(r.scores[i])) for i in sel
        ]
        what = "highest-scoring" if r.mode == "top" else f"nearest the threshold {r.threshold:.3f}"
        return self._page(
            hits, n, offset, f"{what} unlabelled windows for {r.cls}", f"head {os.path.basename(r.head_dir)}"
        )

    def raven(self, cls: str, threshold: float | None) -> str:
        from yamnet_beam.analysis.raven import raven_text

        head = self.head if self.head and cls.lower() in [c.lower() for c in self.head.classes] else None
        with self._sql:
            ev = q.events(self.out, cls, threshold if threshold is not None or head else 0.5, head=head)
        return raven_text(ev)
