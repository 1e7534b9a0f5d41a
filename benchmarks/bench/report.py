"""The benchmark's printed report: figures, ratios against the same run's baselines, and the targets."""

from __future__ import annotations

from typing import Any

from bench.floor import floor_total

TARGET_FLOOR_RATIO = 0.85
TARGET_VS_BARE_INVOKE = 1.15  # 1 worker's frames/s over bare per-frame invoke's, same run
TARGET_CAPACITY_SHARE = 0.9  # 2 workers' speedup over 1, as a share of two bare-invoke processes' over one
TARGET_RSS_MB = 300.0
TARGET_RSS_GROWTH = 0.10


def format_report(r: dict[str, Any]) -> str:
    m, c, f = r["machine"], r["corpus"], r["floor_mixed"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {m['mem_gb']} GB; "
        f"Python {m['python']}, Beam {m['apache_beam']}, LiteRT {m['ai_edge_litert']}, numpy {m['numpy']}, "
        f"pyarrow {m['pyarrow']}, libsndfile {m['libsndfile']}, soxr {m['soxr']}; "
        f"OPENBLAS env: {m['openblas_env'] or 'unset'}",
        f"Mixed corpus: {c['mixed']['files']} files, {c['mixed']['audio_s'] / 60:.1f} min, "
        f"{f['frames']} frames (WAV/FLAC/MP3/Ogg x 16/44.1/48 kHz x mono/stereo); best of {r['repeats']} run(s)",
        f"Floor (one core, CPU s): decode {f['decode_s']:.2f} + downmix {f['downmix_s']:.2f} + resample "
        f"{f['resample_s']:.2f} + bare invoke {f['invoke_s']:.2f} = {floor_total(f):.2f} "
        f"(bare invoke {f['invoke_ms_per_frame']:.3f} ms/frame = {1000 / f['invoke_ms_per_frame']:.0f} frames/s; "
        f"YamnetModel.predict {f['predict_ms_per_frame']:.3f} ms/frame; resample best: {f['resample_methods']})",
        "",
        "| case | wall s | start-up s | net s | frames/s | x realtime | vs floor | vs floor (raw wall) "
        "| net CPU s | vs floor (CPU) | vs bare invoke | vs bare invoke (CPU) | others' CPU | load 1m |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t in r["table"]:
        su = "-" if t["startup_s"] is None else f"{t['startup_s']:.2f}"
        load = "-" if t.get("foreign_cpu_share") is None else f"{t['foreign_cpu_share']:.0%}"
        avg = "-" if not t.get("loadavg_1m") else f"{t['loadavg_1m'][0]:.1f}"
        lines.append(
            f"| {t['case']} | {t['wall_s']:.2f} | {su} | {t['net_s']:.2f} | {t['frames_per_s']:.0f} | "
            f"{t['realtime_x']:.0f} | {t['vs_floor']:.2f} | {t['vs_floor_raw']:.2f} | {t['net_cpu_s']:.2f} | "
            f"{t['vs_floor_cpu']:.2f} | {t['vs_invoke']:.2f} | {t['vs_invoke_cpu']:.2f} | {load} | {avg} |"
        )
    bp = r.get("batched_vs_per_frame")
    if bp:
        lines += [
            "",
            f"Pipeline 1 worker, batched over --inference per_frame (runs taking turns): {bp['net_wall']:.3f}x on "
            f"net wall time (best runs), {bp['net_cpu_median']:.3f}x on net CPU time (median runs; CPU s per run "
            f"{bp['cpu_s']['batched']} vs {bp['cpu_s']['per_frame']}, start-up {bp['cpu_s']['startup']})",
        ]
    ma = r.get("model_alone", {})
    if ma.get("rows"):
        lines += [
            "",
            f"Model alone ({ma['seconds']:.0f} s of 16 kHz audio, {ma['repeats']} interleaved repeats, ratios within "
            f"a repeat, median; others' CPU {ma['foreign_cpu_share']:.0%}):",
            "",
            "| case | frames/s | ratio (min-max) | CPU frames/s | ratio on CPU time | vs |",
            "| --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for m_row in ma["rows"]:
            lo, hi = m_row["ratio_range"]
            lines.append(
                f"| {m_row['case']} | {m_row['frames_per_s']:.0f} | {m_row['ratio']:.3f} ({lo:.2f}-{hi:.2f}) | "
                f"{m_row['cpu_frames_per_s']:.0f} | {m_row['cpu_ratio']:.3f} | {m_row['baseline']} |"
            )
    cap = r.get("capacity")
    if cap:
        loads = [x["loadavg_1m"] for n in ("1", "2") for x in cap["runs"][n]]
        lines += [
            "",
            f"Parallel capacity: bare invoke {cap['one_frames_per_s']:.0f} frames/s in one process, "
            f"{cap['two_frames_per_s']:.0f} in two at once = {cap['capacity']:.3f}x (best of "
            f"{len(cap['runs']['1'])}; load average {min(loads):.1f}-{max(loads):.1f})",
        ]
    lines += [
        "",
        "| long-file case | audio | wall s | net s | x realtime | vs floor | vs floor (CPU) | peak RSS per worker MB "
        "| others' CPU |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t, spec in zip(r["long_table"], (c["long"], c["long"], c["short"], c["short"]), strict=True):
        lines.append(
            f"| {t['case']} | {spec['seconds'] / 60:.0f} min {spec['container']} {spec['rate'] / 1000:g}k "
            f"{spec['channels']}ch | {t['wall_s']:.2f} | {t['net_s']:.2f} | {t['realtime_x']:.0f} | "
            f"{t['vs_floor']:.2f} | {t['vs_floor_cpu']:.2f} | {t['peak_rss_worker_mb']:.0f} | "
            f"{t['foreign_cpu_share']:.0%} |"
        )
    lines.append("")
    for w, s in r["stage_shares"].items():
        parts = ", ".join(
            f"{k} {v:.0%} ({s['seconds'].get(k, 0):.2f} s)" if k in s["seconds"] else f"{k} {v:.0%}"
            for k, v in s["share"].items()
        )
        lines.append(f"Stage share of worker time ({w}, {s['busy_s']:.2f} worker-s): {parts}")
    w2 = r["pipeline"]["2w"]["rss"]
    lines.append(
        f"2-worker mixed run: CPU s per SDK worker process {w2.get('worker_cpu_s')}, "
        f"peak RSS MB {w2['worker_peaks_mb']} (helper `sh -c` wrappers included)"
    )
    b = r["bytes_per_audio_hour"]
    lines.append(
        f"Output frames/ bytes per audio hour: float32 {b['float32'] / 1e6:.1f} MB, "
        f"float16 {b['float16'] / 1e6:.1f} MB "
        f"({b['parquet_files_float32']} file(s), {b['row_groups_float32']} row groups); per column (f32, MB/h): "
        + ", ".join(f"{k} {v / 1e6:.2f}" for k, v in b["column_bytes_per_hour_float32"].items())
    )
    lines += ["", "| target | value | met |", "| --- | --- | --- |"]
    for t in r["targets"]:
        lines.append(f"| {t['target']} | {t['value']} | {'yes' if t['met'] else 'NO'} |")
    return "\n".join(lines)


def stage_shares(res: dict[str, Any], startup_s: float, workers: int) -> dict[str, Any]:
    """Share of worker time per stage from the DoFn's *_ms counters; the rest is framing, Beam and Python."""
    counters = res.get("metrics", {}).get("counters", {})
    busy = max(1e-9, (res["wall_s"] - startup_s) * workers)
    stages = {k[: -len("_ms")]: v / 1000 for k, v in counters.items() if k.endswith("_ms") and k != "audio_ms"}
    shares = {k: round(v / busy, 4) for k, v in sorted(stages.items())}
    shares["other"] = round(max(0.0, 1 - sum(stages.values()) / busy), 4)
    return {"seconds": {k: round(v, 3) for k, v in stages.items()}, "share": shares, "busy_s": round(busy, 3)}
