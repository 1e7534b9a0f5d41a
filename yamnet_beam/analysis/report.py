"""One self-contained HTML page about a run: summary, errors, top classes per file, plots of a sample.

Everything is inlined (CSS, PNGs as base64 data URIs) so the page can be mailed, attached to a
ticket or opened from a bucket without the output next to it. Needs the ``viz`` extra for plots.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from collections.abc import Sequence

import pyarrow as pa

from yamnet_beam.analysis.output import Output, sql_table
from yamnet_beam.analysis.plot import render_png
from yamnet_beam.analysis.query import head_parts, summary, top_classes
from yamnet_beam.analysis.render import cell, is_number
from yamnet_beam.model.head import Head

MAX_TABLE_ROWS = 500

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5em 0; } td, th { padding: 3px 10px; border-bottom: 1px solid #eee; }
th { text-align: left; background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #1a7f37; } .error { color: #cf222e; } figure { margin: 1.5em 0; } img { max-width: 100%; }
figcaption { font-size: .9em; color: #555; } .muted { color: #777; }
"""


def _table_html(table: pa.Table, max_rows: int = MAX_TABLE_ROWS) -> str:
    if table.num_rows == 0:
        return '<p class="muted">none</p>'
    types = table.schema.types
    head = "".join(f"<th>{html.escape(n)}</th>" for n in table.column_names)
    rows = []
    for r in table.slice(0, max_rows).to_pylist():
        cells = []
        for (name, v), t in zip(r.items(), types, strict=True):
            text = cell(v, t)
            cls = ' class="num"' if is_number(t) else (f' class="{html.escape(text)}"' if name == "status" else "")
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = f'<p class="muted">{table.num_rows - max_rows} more rows not shown</p>' if table.num_rows > max_rows else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"


def sample_paths(paths: Sequence[str], n: int) -> list[str]:
    """``n`` paths spread evenly over the sorted list: deterministic, and not just the first folder."""
    paths = sorted(paths)
    if n <= 0 or not paths:
        return []
    if n >= len(paths):
        return paths
    step = len(paths) / n
    return [paths[int(i * step)] for i in range(n)]


def build_report(
    out: Output,
    sample: int = 6,
    top_k: int = 3,
    top_n: int = 10,
    threshold: float = 0.5,
    decode_audio: bool = True,
    head: Head | None = None,
) -> str:
    """The report as an HTML string; with ``head``, a section on its classes (scores from run --head or apply)."""
    m = out.manifest
    head_section = _head_section(out, head, top_k) if head is not None else ""  # fails before the plots if absent
    run_rows = [
        ("output", out.uri),
        ("model", f"{m.get('model_uri', '?')} (sha256 {str(m.get('model_sha256', '?'))[:12]})"),
        ("runtime", m.get("runtime", "?")),
        ("labels", m.get("labels_source", "?")),
        ("hop", f"{out.hop_s:.3f} s"),
        ("embedding dtype", m.get("embedding_dtype", "?")),
        ("started / finished", f"{m.get('started_at', '?')} / {m.get('finished_at', '?')}"),
        ("wall time", f"{m.get('wall_s', 0):.1f} s" if m.get("wall_s") is not None else "?"),
        ("versions", f"yamnet-beam {m.get('yamnet_beam_version', '?')}, Beam {m.get('beam_version', '?')}"),
        *([("head (run --head)", f"{m['head_name']} (sha256 {m['head_sha256'][:12]})")] if m.get("head_name") else []),
    ]
    run_table = pa.table({"": [r[0] for r in run_rows], "value": [str(r[1]) for r in run_rows]})
    errors = sql_table(
        out.con, "SELECT path, error_kind, error, frames FROM files WHERE status = 'error' ORDER BY error_kind, path"
    )
    ok_paths = [r[0] for r in out.con.execute("SELECT path FROM files WHERE frames > 0").fetchall()]
    tops = top_classes(out, top_k) if ok_paths else pa.table({})

    figures = []
    for path in sample_paths(ok_paths, sample):
        png = render_png(out, path, top_n=top_n, threshold=threshold, decode_audio=decode_audio, width_in=11)
        data = base64.b64encode(png).decode("ascii")
        figures.append(
            f'<figure><img alt="scores of {html.escape(path)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(path)}: top {top_n} classes by mean score; boxes are events with "
            f"score &ge; {threshold}</figcaption></figure>"
        )
    options = html.escape(json.dumps(m.get("options", {}), indent=1, sort_keys=True, default=str))
    title = f"yamnet-beam report: {out.uri}"
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="muted">generated {generated}</p>
<h2>Run</h2>
{_table_html(run_table)}
<details><summary>options</summary><pre>{options}</pre></details>
<h2>Coverage</h2>
{_table_html(summary(out))}
<h2>Errors ({errors.num_rows})</h2>
{_table_html(errors)}
<h2>Top classes per file</h2>
<p class="muted">by mean score over the file's frames, and by its loudest frame (max)</p>
{_table_html(tops)}
{head_section}
<h2>Sample of files ({len(figures)} of {len(ok_paths)})</h2>
{"".join(figures) or '<p class="muted">no file has frames</p>'}
</body></html>
"""


def _head_section(out: Output, head: Head, top_k: int) -> str:
    """The head's cross-validated metrics and thresholds (head.json), and each file's top classes by mean head score."""
    _, in_frames = head_parts(out, head)
    source = "frames/ (run --head)" if in_frames else f"heads/{head.name}/ (yamnet-beam apply)"
    clip = head.metrics.get("clip", {})
    summary_rows = [(k, clip[k]) for k in ("accuracy", "mAP", "macro_f1") if k in clip]
    summary_rows += [(k, head.metrics[k]) for k in ("files", "frames") if k in head.metrics]
    per_class = clip.get("per_class", {})
    classes = pa.table(
        {
            "class": head.classes,
            "threshold": pa.array(head.thresholds, pa.float32()),
            **{
                k: pa.array([per_class.get(c, {}).get(k) for c in head.classes], pa.float32())
                for k in ("precision", "recall", "f1")
            },
            "support": pa.array([per_class.get(c, {}).get("support") for c in head.classes], pa.int64()),
        }
    )
    tops = top_classes(out, top_k, head=head)
    threshold = dict(zip(head.classes, head.thresholds, strict=True))
    tops = tops.append_column(
        "threshold", pa.array([threshold[c] for c in tops.column("by_mean").to_pylist()], pa.float32())
    )
    tops = tops.select(["path", "rank", "by_mean", "mean", "threshold", "by_max", "max"])
    metrics = pa.table({"": [r[0] for r in summary_rows], "value": [cell(r[1], pa.float32()) for r in summary_rows]})
    return f"""<section id="head">
<h2>Custom classes: {html.escape(head.name)} ({head.num_classes}, {html.escape(head.activation)})</h2>
<p class="muted">head sha256 {head.sha256[:12]}, scores from {html.escape(source)}; cross-validated by file
(held-out clips, the mean of their frames' probabilities)</p>
{_table_html(metrics)}
<h3>Classes: calibrated threshold and held-out clip precision / recall / F1</h3>
{_table_html(classes)}
<h3>Top custom classes per file</h3>
<p class="muted">by mean head score over the file's frames (threshold: that class's calibrated one), and by
its highest frame (max)</p>
{_table_html(tops)}
</section>"""


def write_report(out: Output, dest: str, **kwargs) -> str:
    """Writes :func:`build_report` to ``dest`` (UTF-8) and returns ``dest``."""
    page = build_report(out, **kwargs)
    with open(dest, "w", encoding="utf-8") as f:
        f.write(page)
    return dest
