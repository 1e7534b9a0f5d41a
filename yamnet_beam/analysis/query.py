"""Questions about an output, answered in SQL over the Parquet files: class names, top classes per file,
events (gaps and islands), and the run summary. Each returns a small ``pyarrow.Table``.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

import numpy as np
import pyarrow as pa

from yamnet_beam import framing
from yamnet_beam.analysis.output import Output, QueryError, sql_str, sql_table
from yamnet_beam.analysis.pool import iter_pooled
from yamnet_beam.model.head import Head
from yamnet_beam.model.labels import Labels
from yamnet_beam.table import schema
from yamnet_beam.table.schema import list_matrix


def head_labels(head: Head) -> Labels:
    return Labels(names=tuple(head.classes), mids=(None,) * head.num_classes, source=f"head:{head.name}")


def head_parts(out: Output, head: Head) -> tuple[list[str], bool]:
    """Where this head's scores of ``out`` are: frames/ (``run --head``: True) or heads/<name>/ (``apply``)."""
    if out.frame_files and out.run_metadata.get("head_sha256") == head.sha256:
        return out.frame_files, True
    d = out.head_dir(head.name)
    parts = out.head_parts(head.name)
    if parts:
        import pyarrow.parquet as pq

        with out.fs.open(parts[0], "rb") as f:
            applied = schema.read_metadata(pq.read_schema(f)).get("head_sha256")
        if applied == head.sha256:
            missing = sorted({f.rsplit("/", 1)[-1] for f in out.frame_files} - {p.rsplit("/", 1)[-1] for p in parts})
            if missing:  # e.g. the output was resumed after apply: those parts' files would silently be left out
                raise QueryError(
                    f"{d} scores {len(parts)} frames parts but frames/ has {len(out.frame_files)} "
                    f"({missing[0]} is not scored): run `yamnet-beam apply {out.uri} --head HEAD_DIR "
                    "--mode overwrite` again"
                )
            return [out.child_uri(p[len(out.root) + 1 :]) for p in parts], False
    raise QueryError(
        f"{out.uri} holds no scores of the head {head.name!r} (SHA-256 {head.sha256[:12]}...): "
        f"run `yamnet-beam apply {out.uri} --head HEAD_DIR` first (or `run --head`)"
    )


def head_view(out: Output, head: Head) -> str:
    """A DuckDB view ``head_frames`` (path, frame, start_s, valid_samples, head_scores) of a head's scores on
    ``out`` (run --head or apply); returns its name. Used by the class queries here and by the explorer."""
    parts, in_frames = head_parts(out, head)
    if in_frames:
        out.con.execute("CREATE OR REPLACE VIEW head_frames AS SELECT * FROM frames")
    else:
        files = ", ".join(sql_str(p) for p in parts)
        out.con.execute(
            "CREATE OR REPLACE VIEW head_frames AS SELECT h.path, h.frame, h.start_s, f.valid_samples, h.head_scores"
            f" FROM read_parquet([{files}]) h JOIN frames f USING (path, frame)"
        )
    return "head_frames"


def resolve_head_class(head: Head, spec: str) -> int:
    lower = [c.lower() for c in head.classes]
    if spec.strip().lower() in lower:
        return lower.index(spec.strip().lower())
    raise QueryError(f"unknown class {spec!r} of the head {head.name!r}: its classes are {', '.join(head.classes)}")


def resolve_class(labels: Labels, spec: str) -> int:
    """A class index from a display name (any case), an AudioSet MID (``/m/09x0r``) or an index."""
    s = spec.strip()
    if s.isdigit() and int(s) < len(labels):
        return int(s)
    if s in labels.mids:
        return labels.mids.index(s)
    lower = [n.lower() for n in labels.names]
    if s.lower() in lower:
        return lower.index(s.lower())
    close = difflib.get_close_matches(s.lower(), lower, n=5, cutoff=0.5)
    contains = [n for n in labels.names if s.lower() in n.lower()][:5]
    hints = list(dict.fromkeys([labels.names[lower.index(c)] for c in close] + contains))
    hint = f"; did you mean {', '.join(repr(h) for h in hints)}?" if hints else " (see labels.csv in the output)"
    raise QueryError(f"unknown class {spec!r}: give a display name, a MID such as /m/09x0r, or an index{hint}")


def top_classes(out: Output, k: int = 5, path_glob: str | None = None, head: Head | None = None) -> pa.Table:
    """Per file, the ``k`` classes with the highest mean score and the ``k`` with the highest max score
    (YAMNet's, or with ``head`` that head's)."""
    if k < 1:
        raise QueryError(f"-k must be at least 1, got {k}")
    source = None
    if head is not None:
        source = ("head_scores", head_parts(out, head)[0], head_labels(head))
    names = np.asarray((source[2] if source else out.labels).names, dtype=object)
    k = min(k, len(names))
    ranks = np.arange(1, k + 1, dtype=np.int32)
    tables = []
    for t in iter_pooled(out, path_glob, with_embedding=False, scores=source):
        columns: dict[str, Any] = {"path": t.column("path").take(np.repeat(np.arange(t.num_rows), k))}
        columns["rank"] = np.tile(ranks, t.num_rows)
        for by, value, pooled in (("by_mean", "mean", "mean_scores"), ("by_max", "max", "max_scores")):
            m = list_matrix(t.column(pooled))  # float32 [files, classes]
            top = np.argsort(-m, axis=1, kind="stable")[:, :k]
            columns[by] = pa.array(names[top].reshape(-1), pa.string())
            columns[value] = np.take_along_axis(m, top, axis=1).reshape(-1)
        tables.append(pa.table(columns))
    if not tables:
        raise QueryError(f"no frames match --path {path_glob!r}" if path_glob else "the output holds no frames")
    return pa.concat_tables(tables).sort_by([("path", "ascending"), ("rank", "ascending")])


def events(
    out: Output,
    cls: str,
    threshold: float | None,
    min_duration: float = 0.0,
    path_glob: str | None = None,
    path: str | None = None,
    max_gap: float = 0.0,
    head: Head | None = None,
) -> pa.Table:
    """Time ranges where one class's score is at least ``threshold``; runs of consecutive frames merge.

    ``max_gap`` (seconds) also bridges dips: runs separated by at most that much time below the
    threshold (whole hops) become one event, e.g. the pauses between words of one utterance.

    Each frame stands for the hop-long slice around its window's centre, so consecutive frames tile
    the timeline: an event runs from its first frame's centre minus half a hop to its last frame's
    centre plus half a hop (clipped to the audio). This puts edges within a hop of the sound's, where
    window edges (0.975 s wide) would overstate events by up to a window. ``path_glob`` filters
    paths by a shell glob, ``path`` selects one path exactly. With ``head``, ``cls`` is one of its classes
    and ``threshold`` defaults to that class's calibrated threshold.
    """
    table, column = "frames", "scores"
    if head is not None:
        index = resolve_head_class(head, cls)
        threshold = head.thresholds[index] if threshold is None else threshold
        table, column, label = head_view(out, head), "head_scores", head.classes[index]
    elif threshold is None:
        raise QueryError("--threshold is required (a score in [0, 1]) unless --head gives calibrated thresholds")
    if not 0.0 <= threshold <= 1.0:
        raise QueryError(f"--threshold is a score in [0, 1], got {threshold}")
    if min_duration < 0:
        raise QueryError(f"--min_duration must be >= 0, got {min_duration}")
    if max_gap < 0:
        raise QueryError(f"--max_gap must be >= 0, got {max_gap}")
    gap_frames = int(math.floor(max_gap / out.hop_s + 1e-9))
    if head is None:
        index = resolve_class(out.labels, cls)
        label = out.labels.names[index]
    half_window = framing.WINDOW_SECONDS / 2
    sql = f"""
        WITH hits AS (
            SELECT path, frame, start_s + {half_window} AS centre,
                   start_s + valid_samples / {float(framing.SAMPLE_RATE)} AS audio_end, {column}[{index + 1}] AS score
            FROM {table}
            WHERE {column}[{index + 1}] >= $threshold {"AND path GLOB $glob" if path_glob else ""}
                  {"AND path = $path" if path is not None else ""}
        ), steps AS (  -- gaps and islands: a new island starts after more than $gap missing frames
            SELECT *, CASE WHEN frame - lag(frame) OVER (PARTITION BY path ORDER BY frame) <= 1 + $gap
                           THEN 0 ELSE 1 END AS new_island
            FROM hits
        ), islands AS (
            SELECT *, sum(new_island) OVER (PARTITION BY path ORDER BY frame ROWS UNBOUNDED PRECEDING) AS island
            FROM steps
        ), ev AS (
            SELECT path, min(frame) AS first_frame, max(frame) AS last_frame,
                   greatest(0.0, min(centre) - $half_hop) AS start_s,
                   least(max(centre) + $half_hop, max(audio_end)) AS end_s,
                   max(score) AS peak_score, arg_max(centre, score) AS peak_s
            FROM islands GROUP BY path, island
        )
        SELECT path, $label AS class, start_s, end_s, end_s - start_s AS duration_s, peak_score, peak_s,
               (last_frame - first_frame + 1)::INTEGER AS frames, first_frame::INTEGER AS first_frame
        FROM ev WHERE end_s - start_s >= $min_duration ORDER BY path, start_s
    """
    params: dict[str, Any] = {
        "threshold": threshold,
        "half_hop": out.hop_s / 2,
        "label": label,
        "min_duration": min_duration,
        "gap": gap_frames,
    }
    if path_glob:
        params["glob"] = path_glob
    if path is not None:
        params["path"] = path
    return sql_table(out.con, sql, params)


def summary(out: Output, top_n: int = 10) -> pa.Table:
    """Coverage of a run as ``section, item, value`` rows: files by status, errors by kind, audio, top labels."""
    sql = """
        SELECT 1 AS o, 'files' AS section, 'matched' AS item, count(*)::DOUBLE AS value FROM files
        UNION ALL SELECT 2, 'files', status, count(*) FROM files GROUP BY status
        UNION ALL SELECT 3, 'errors', error_kind, count(*) FROM files WHERE status = 'error' GROUP BY error_kind
        UNION ALL SELECT 4, 'audio', 'hours', coalesce(sum(duration_s), 0) / 3600 FROM files
        UNION ALL SELECT 5, 'audio', 'frames', count(*) FROM frames
        UNION ALL (SELECT 6, 'top_label (frames)', top_label, count(*) FROM frames
                   GROUP BY top_label ORDER BY count(*) DESC, top_label LIMIT $n)
    """
    return sql_table(out.con, f"SELECT section, item, value FROM ({sql}) ORDER BY o, value DESC, item", {"n": top_n})
