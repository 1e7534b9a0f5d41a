"""yamnet_beam.analysis.plot: the picture of one file renders, shows the scores, and marks the events."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.helpers import png_stats
from yamnet_beam.analysis import output, plot
from yamnet_beam.cli import main

matplotlib_image = pytest.importorskip("matplotlib.image")


def test_plot_renders_a_nontrivial_png(scene, out, tmp_path):  # noqa: F811
    dest = plot.plot_file(out, scene["scene"], str(tmp_path / "scene.png"), top_n=6)
    stats = png_stats(open(dest, "rb").read())
    assert stats["width"] >= 800 and stats["height"] >= 250
    assert stats["std"] > 20  # not blank
    assert stats["colours"] > 50  # grey heatmap levels, waveform, event colours, text antialiasing


def test_plot_marks_events_in_colour(scene, out):  # noqa: F811
    """A class's event boxes appear in its row colour when it crosses the threshold, and not otherwise."""
    ff = plot.file_frames(out, scene["scene"])
    order = np.argsort(-ff.scores.mean(axis=0), kind="stable")[:4]
    peaks = ff.scores[:, order].max(axis=0)
    row = int(np.flatnonzero((peaks >= 0.5) & (peaks < 0.999))[0])  # e.g. Speech: events at 0.5, none at 0.999
    colour = np.array([int(plot.EVENT_COLORS[row][i : i + 2], 16) for i in (1, 3, 5)])

    def coloured_pixels(png: bytes) -> int:
        rgb = png_stats(png)["rgb"].astype(int)
        return int(np.sum(np.all(np.abs(rgb - colour) < 8, axis=1)))

    marked = coloured_pixels(plot.render_png(out, scene["scene"], top_n=4, threshold=0.5))
    unmarked = coloured_pixels(plot.render_png(out, scene["scene"], top_n=4, threshold=0.999))
    assert marked > 100
    assert marked > 10 * max(1, unmarked)


def test_envelope_follows_the_audio(scene):  # noqa: F811
    times, lo, hi = plot.envelope(scene["scene"], points=200)
    assert len(times) <= 200 and np.all(lo <= hi)
    mix = scene["mix"]
    assert hi.max() == pytest.approx(mix.max(), abs=1e-6) and lo.min() == pytest.approx(mix.min(), abs=1e-6)
    quiet = times < 2.5  # leading silence
    assert np.all(hi[quiet] == 0) and np.all(lo[quiet] == 0)
    assert plot.envelope(str(scene["audio"] / "broken.wav")) is None


def test_plot_without_audio_and_unknown_path(scene, out, tmp_path):  # noqa: F811
    png = plot.render_png(out, scene["scene"], decode_audio=False)
    assert png_stats(png)["std"] > 20
    with pytest.raises(output.QueryError, match="no frames for"):
        plot.render_png(out, "/not/in/the/output.wav")


def test_cli_plot(scene, tmp_path, capsys):  # noqa: F811
    dest = tmp_path / "p.png"
    assert main(["plot", scene["out"], "--path", scene["scene"], "-o", str(dest), "--top", "5"]) == 0
    assert png_stats(dest.read_bytes())["colours"] > 50
    assert main(["plot", scene["out"], "--path", "nope.wav", "-o", str(tmp_path / "q.png")]) == 2
    assert "no frames for" in capsys.readouterr().err


@pytest.mark.parametrize(
    "samples, expected",
    [
        (4800, (0.0, 0.3)),  # 0.3 s, shorter than a window: one frame, the whole file, not past its end
        (15600, (0.2475, 0.7275)),  # exactly one window: the hop around its centre
        (15600 + 7680 + 100, (0.2475, 23380 / 16000)),  # the last (padded) frame's cell would pass the end
        (16000 * 10, (0.2475, 19 * 0.48 + 0.4875 + 0.24)),  # 10 s: 20 frames, all cells inside
    ],
)
def test_heatmap_cells_stop_at_the_files_end(samples, expected):
    from yamnet_beam import framing
    from yamnet_beam.analysis.plot import cells_span

    n = framing.num_frames(samples, framing.HOP_SAMPLES)
    centres = np.arange(n) * framing.HOP_SAMPLES / 16000 + framing.WINDOW_SECONDS / 2
    t0, t1 = cells_span(centres, framing.HOP_SAMPLES / 16000 / 2, samples / 16000)
    assert t0 == pytest.approx(expected[0]) and t1 == pytest.approx(expected[1])
    assert t1 <= samples / 16000
