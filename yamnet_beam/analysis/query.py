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
from yamnet_beam.analysis.output import Output, QueryError, list_matrix, sql_table
from yamnet_beam.analysis.pool import iter_pooled
from yamnet_beam.model.labels import Labels


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


def top_classes(out: Output, k: int = 5, path_glob: str | None = None) -> pa.Table:
    """Per file, the ``k`` classes with the highest mean score and the ``k`` with the highest max score."""
    if k < 1:
        raise QueryError(f"-k must be at least 1, got {k}")
    names = np.asarray(out.labels.names, dtype=object)
    k = min(k, len(names))
    ranks = np.arange(1, k + 1, dtype=np.int32)
    tables = []
    for t in iter_pooled(out, path_glob, with_embedding=False):
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
    threshold: float,
    min_duration: float = 0.0,
    path_glob: str | None = None,
    path: str | None = None,
    max_gap: float = 0.0,
) -> pa.Table:
    """Time ranges where one class's score is at least ``threshold``; runs of consecutive frames merge.

    ``max_gap`` (seconds) also bridges dips: runs separated by at most that much time below the
    threshold (whole hops) become one event, e.g. the pauses between words of one utterance.

    Each frame stands for the hop-long slice around its window's centre, so consecutive frames tile
    the timeline: an event runs from its first frame's centre minus half a hop to its last frame's
    centre plus half a hop (clipped to the audio). This puts edges within a hop of the sound's, where
    window edges (0.975 s wide) would overstate events by up to a window. ``path_glob`` filters
    paths by a shell glob, ``path`` selects one path exactly.
    """
    if not 0.0 <= threshold <= 1.0:
        raise QueryError(f"--threshold is a score in [0, 1], got {threshold}")
    if min_duration < 0:
        raise QueryError(f"--min_duration must be >= 0, got {min_duration}")
    if max_gap < 0:
        raise QueryError(f"--max_gap must be >= 0, got {max_gap}")
    gap_frames = int(math.floor(max_gap / out.hop_s + 1e-9))
    index = resolve_class(out.labels, cls)
    half_window = framing.WINDOW_SECONDS / 2
    sql = f"""
        WITH hits AS (
            SELECT path, frame, start_s + {half_window} AS centre,
                   start_s + valid_samples / {float(framing.SAMPLE_RATE)} AS audio_end, scores[{index + 1}] AS score
            FROM frames
            WHERE scores[{index + 1}] >= $threshold {"AND path GLOB $glob" if path_glob else ""}
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
        "label": out.labels.names[index],
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
