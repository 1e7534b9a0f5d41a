"""What a child process measures: one pipeline run (Beam metrics, RSS, output bytes) or the naive loop."""

from __future__ import annotations

import csv
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.corpus import TARGET_RATE
from bench.procs import RssSampler


def _metrics(result: Any) -> dict[str, Any]:
    """Counters and distributions of the yamnet_beam namespace, summed over steps (committed, else attempted)."""
    out: dict[str, Any] = {"counters": {}, "distributions": {}}
    try:
        q = result.metrics().query()
    except Exception as e:  # a runner without metrics support
        return {"error": f"{type(e).__name__}: {e}"}

    def val(r: Any) -> Any:
        try:
            v = r.committed
        except Exception:
            v = None
        return v if v is not None else r.attempted

    for r in q.get("counters", []):
        if r.key.metric.namespace == "yamnet_beam":
            name = r.key.metric.name
            out["counters"][name] = out["counters"].get(name, 0) + int(val(r))
    for r in q.get("distributions", []):
        if r.key.metric.namespace == "yamnet_beam":
            d = val(r)
            out["distributions"][r.key.metric.name] = {
                "count": d.count,
                "sum": d.sum,
                "min": d.min,
                "max": d.max,
            }
    return out


def _parquet_bytes(output: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    res: dict[str, Any] = {}
    for table in ("frames", "files"):
        files = sorted((output / table).glob("*.parquet"))
        res[f"{table}_bytes"] = sum(f.stat().st_size for f in files)
        if table == "frames":
            cols: dict[str, int] = {}
            rows = groups = 0
            for f in files:
                md = pq.ParquetFile(f).metadata
                rows += md.num_rows
                groups += md.num_row_groups
                for g in range(md.num_row_groups):
                    rg = md.row_group(g)
                    for c in range(rg.num_columns):
                        col = rg.column(c)
                        name = col.path_in_schema.split(".")[0]
                        cols[name] = cols.get(name, 0) + col.total_compressed_size
            res.update(frames_rows=rows, frames_row_groups=groups, frames_files=len(files), column_bytes=cols)
    return res


def _run_pipeline(argv: list[str]) -> tuple[Any, Any, float]:
    """Runs the job through ``yamnet_beam.job.pipeline.run`` (the exact user path, summary and manifest included),
    capturing the PipelineResult for its metrics with a ``beam.Pipeline`` subclass passed as ``test_pipeline``."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from yamnet_beam.job import pipeline as yp

    captured: dict[str, Any] = {}

    class CapturingPipeline(beam.Pipeline):
        def run(self, *a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            result = super().run(*a, **kw)
            result.wait_until_finish()
            captured["result"], captured["pipeline_s"] = result, time.perf_counter() - t0
            return result

    summary = yp.run(argv, test_pipeline=CapturingPipeline(options=PipelineOptions(argv)))
    return summary, captured.get("result"), captured.get("pipeline_s", float("nan"))


def child_pipeline(spec: dict[str, Any]) -> dict[str, Any]:
    import logging

    logging.basicConfig(level=logging.WARNING)
    output = Path(spec["output"])
    argv = [f"--input={p}" for p in spec["inputs"]]
    argv += [
        f"--output={output}",
        f"--model={spec['model']}",
        f"--class_map={spec['class_map']}",
        "--mode=overwrite",
        f"--embedding_dtype={spec.get('embedding_dtype', 'float32')}",
        *spec.get("extra", []),
    ]
    t0 = time.perf_counter()
    import apache_beam  # noqa: F401  (imports are start-up too, but reported apart from run())

    import yamnet_beam.job.pipeline  # noqa: F401

    import_s = time.perf_counter() - t0
    profiler = None
    if spec.get("profile"):
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001)
        profiler.start()
    with RssSampler() as rss:
        t0 = time.perf_counter()
        summary, result, pipeline_s = _run_pipeline(argv)
        wall = time.perf_counter() - t0
    if profiler is not None:
        profiler.stop()
        Path(spec["profile"]).write_text(profiler.output_text(unicode=False, color=False, show_all=False))
        Path(spec["profile"]).with_suffix(".html").write_text(profiler.output_html())
    out = {
        "import_s": import_s,
        "wall_s": wall,
        "pipeline_s": pipeline_s,
        "rss": rss.report(),
        "metrics": _metrics(result) if result is not None else {},
        "bytes": _parquet_bytes(output),
    }
    out["summary"] = {
        k: getattr(summary, k) for k in ("files_matched", "files_ok", "files_error", "frames", "audio_hours")
    }
    return out


def child_naive(spec: dict[str, Any]) -> dict[str, Any]:
    """The baseline a first attempt would write: whole-file decode, mean downmix, per-row dicts."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import soundfile as sf
    import soxr
    from ai_edge_litert.interpreter import Interpreter

    from yamnet_beam.model import expose_embedding

    with RssSampler() as rss:
        t0 = time.perf_counter()
        with open(spec["model"], "rb") as f:
            interp = Interpreter(model_content=expose_embedding(f.read()), num_threads=1)
        interp.allocate_tensors()
        inp = interp.get_input_details()[0]["index"]
        outs = {int(d["shape"][-1]): d["index"] for d in interp.get_output_details()}
        with open(spec["class_map"]) as f:
            labels = [r["display_name"] for r in csv.DictReader(f)]
        out_dir = Path(spec["output"])
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        frames = 0
        audio_s = 0.0
        for i, path in enumerate(spec["inputs"]):
            x, rate = sf.read(path, dtype="float32", always_2d=True)
            audio_s += len(x) / rate
            mono = x.mean(axis=1)
            y = soxr.resample(mono, rate, TARGET_RATE).astype(np.float32)
            n16 = len(y)
            n = 1 + max(0, -(-(n16 - 15600) // 7680))
            y = np.concatenate([y, np.zeros(max(0, (n - 1) * 7680 + 15600 - len(y)), np.float32)])
            rows = []
            for k in range(n):
                interp.set_tensor(inp, y[k * 7680 : k * 7680 + 15600][None, :])
                interp.invoke()
                scores = interp.get_tensor(outs[521])[0]
                emb = interp.get_tensor(outs[1024])[0]
                top = int(np.argmax(scores))
                rows.append(
                    {
                        "path": path,
                        "frame": k,
                        "start_s": k * 7680 / TARGET_RATE,
                        "end_s": (k * 7680 + 15600) / TARGET_RATE,
                        "valid_samples": min(15600, max(0, n16 - k * 7680)),
                        "scores": scores.tolist(),
                        "embedding": emb.tolist(),
                        "top_label": labels[top],
                        "top_score": float(scores[top]),
                    }
                )
            frames += n
            pq.write_table(pa.Table.from_pylist(rows), out_dir / f"part-{i:05d}.parquet", compression="zstd")
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "frames": frames, "audio_s": audio_s, "rss": rss.report()}
