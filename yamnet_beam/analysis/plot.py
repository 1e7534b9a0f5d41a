"""Pictures of one file's results: the audio's envelope over a heatmap of its top classes, events marked.

Laid out like YAMNet's own visualisation (waveform above, class scores over time below, grey
scale), from the stored frames alone: the audio is decoded only for the envelope, and if it cannot
be reached the per-frame maximum score is drawn instead. Uses matplotlib's object API with the Agg
canvas (no pyplot global state), so it is safe in servers and threads. Needs the ``viz`` extra.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np

from yamnet_beam import framing
from yamnet_beam.analysis.output import Output, QueryError, sql_table
from yamnet_beam.analysis.query import events
from yamnet_beam.table.schema import list_matrix

_LOG = logging.getLogger(__name__)
ENVELOPE_POINTS = 2000
EVENT_COLORS = ("#e6550d", "#3182bd", "#31a354", "#756bb1", "#de2d26", "#636363", "#fd8d3c", "#6baed6")


def _figure_class():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise QueryError('plots need matplotlib: pip install "yamnet-beam[viz]"') from e
    return Figure, FigureCanvasAgg


@dataclass
class FileFrames:
    """One file's stored frames: times and the ``[F, C]`` score matrix."""

    path: str
    start_s: np.ndarray
    scores: np.ndarray
    audio_end_s: float


def file_frames(out: Output, path: str) -> FileFrames:
    """Reads one file's frames in order; raises :class:`QueryError` naming a few stored paths if it is absent."""
    t = sql_table(
        out.con,
        "SELECT start_s, valid_samples, scores FROM frames WHERE path = ? ORDER BY frame",
        [path],
    )
    if t.num_rows == 0:
        like = [r[0] for r in out.con.execute("SELECT DISTINCT path FROM files ORDER BY path LIMIT 5").fetchall()]
        raise QueryError(f"no frames for {path!r} in {out.uri}; paths look like: {', '.join(like)}")
    start = t.column("start_s").to_numpy()
    valid = t.column("valid_samples").to_numpy()
    end = float(start[-1] + valid[-1] / framing.SAMPLE_RATE)
    return FileFrames(path, start, list_matrix(t.column("scores")), end)


def envelope(path: str, points: int = ENVELOPE_POINTS) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Min/max of the 16 kHz signal in about ``points`` buckets (times, lo, hi); None if it cannot be decoded.

    Streams the file: 10 ms minima/maxima are kept per block, so an hour of audio costs a few MB.
    """
    from yamnet_beam.audio import AudioDecodeError, open_audio

    step = framing.SAMPLE_RATE // 100
    lo: list[np.ndarray] = []
    hi: list[np.ndarray] = []
    carry = np.zeros(0, np.float32)
    try:
        with open_audio(path) as stream:
            for block in stream.blocks():
                x = np.concatenate([carry, block]) if len(carry) else block
                whole = len(x) // step * step
                if whole:
                    b = x[:whole].reshape(-1, step)
                    lo.append(b.min(axis=1))
                    hi.append(b.max(axis=1))
                carry = x[whole:].copy()
    except (AudioDecodeError, OSError) as e:
        _LOG.info("no envelope for %s: %s", path, e)
        return None
    if len(carry):
        lo.append(carry.min(keepdims=True))
        hi.append(carry.max(keepdims=True))
    if not lo:
        return None
    lo_all, hi_all = np.concatenate(lo), np.concatenate(hi)
    group = max(1, -(-len(lo_all) // points))
    n = -(-len(lo_all) // group)
    pad = n * group - len(lo_all)
    lo_g = np.pad(lo_all, (0, pad), mode="edge").reshape(n, group).min(axis=1)
    hi_g = np.pad(hi_all, (0, pad), mode="edge").reshape(n, group).max(axis=1)
    times = (np.arange(n) * group + group / 2) * step / framing.SAMPLE_RATE
    return times, lo_g, hi_g


def cells_span(centres: np.ndarray, half_hop: float, audio_end_s: float) -> tuple[float, float]:
    """Seconds the heatmap covers: each frame stands for the hop around its window's centre, never past the
    file's end; a file shorter than one window has one frame, which stands for all of it."""
    t0, t1 = float(centres[0] - half_hop), min(float(centres[-1] + half_hop), audio_end_s)
    return (0.0, t1) if centres[0] >= audio_end_s else (t0, t1)


def render_png(
    out: Output,
    path: str,
    top_n: int = 10,
    threshold: float = 0.5,
    min_duration: float = 0.0,
    decode_audio: bool = True,
    width_in: float = 12.0,
    dpi: int = 100,
) -> bytes:
    """The picture of one file as PNG bytes (see the module docstring)."""
    figure_cls, canvas_cls = _figure_class()
    ff = file_frames(out, path)
    names = out.labels.names
    top_n = max(1, min(top_n, len(names)))
    order = np.argsort(-ff.scores.mean(axis=0), kind="stable")[:top_n]
    half_hop = out.hop_s / 2
    centres = ff.start_s + framing.WINDOW_SECONDS / 2
    t0, t1 = cells_span(centres, half_hop, ff.audio_end_s)

    fig = figure_cls(figsize=(width_in, 2.0 + 0.28 * top_n), dpi=dpi, layout="constrained")
    canvas_cls(fig)
    top_ax, heat_ax = fig.subplots(2, 1, sharex=True, height_ratios=[1.0, max(1.5, 0.28 * top_n)])

    env = envelope(path) if decode_audio else None
    if env is not None:
        times, lo, hi = env
        top_ax.fill_between(times, lo, hi, color="#4a4a4a", linewidth=0.5)
        top_ax.set_ylabel("waveform")
        lim = float(max(np.abs(lo).max(), np.abs(hi).max(), 1e-3))
        top_ax.set_ylim(-lim * 1.05, lim * 1.05)
    else:
        top_ax.step(centres, ff.scores.max(axis=1), where="mid", color="#4a4a4a")
        top_ax.set_ylim(0, 1.05)
        top_ax.set_ylabel("max score")
    top_ax.set_title(path, fontsize=9, loc="left")

    image = heat_ax.imshow(
        ff.scores[:, order].T,
        aspect="auto",
        interpolation="nearest",
        cmap="gray_r",
        vmin=0.0,
        vmax=1.0,
        extent=(t0, t1, top_n - 0.5, -0.5),
    )
    heat_ax.set_yticks(range(top_n), [names[i] for i in order], fontsize=8)
    heat_ax.set_xlabel("seconds")
    fig.colorbar(image, ax=heat_ax, label="score", fraction=0.03, pad=0.01)

    from matplotlib.patches import Rectangle

    found = []
    for row, cls in enumerate(order):
        ev = events(out, str(int(cls)), threshold, min_duration, path=path)
        color = EVENT_COLORS[row % len(EVENT_COLORS)]
        for start, end in zip(ev.column("start_s").to_pylist(), ev.column("end_s").to_pylist(), strict=True):
            heat_ax.add_patch(
                Rectangle((start, row - 0.45), end - start, 0.9, fill=False, edgecolor=color, linewidth=1.5)
            )
            top_ax.axvspan(start, end, color=color, alpha=0.18, linewidth=0)
            found.append((start, names[cls], color))
    for start, name, color in found:
        top_ax.annotate(
            name,
            (start, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, -2),
            textcoords="offset points",
            va="top",
            fontsize=7,
            color=color,
        )
    heat_ax.set_xlim(min(0.0, t0), max(t1, ff.audio_end_s))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def plot_file(out: Output, path: str, dest: str, **kwargs) -> str:
    """Writes :func:`render_png` of ``path`` to ``dest`` and returns ``dest``."""
    png = render_png(out, path, **kwargs)
    with open(dest, "wb") as f:
        f.write(png)
    return dest
