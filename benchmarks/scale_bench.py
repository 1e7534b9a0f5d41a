#!/usr/bin/env python3
"""Benchmark: what the launcher costs as the number of inputs grows (issue 10).

    python3 benchmarks/scale_bench.py [--sizes 10000 100000 1000000] [--tree 100000] [--e2e-max 100000]

Cases: ``.txt`` manifests of N missing paths (YouTube-id-like names; a missing input becomes an
``io_error`` row without running the model, so the run measures bookkeeping only) and a directory
tree of N empty ``.wav`` files (``empty_file`` rows). For each it measures, in a fresh subprocess:

- launcher wall time until the job is handed to the runner: from calling the CLI entry point to the
  first ``Pipeline.run`` call, plus building and serialising the pipeline proto there (every runner
  does that first);
- the serialised pipeline proto size (``pipeline.to_runner_api().SerializeToString()`` at ``Pipeline.run``);
- launcher peak RSS (the child's ``VmHWM`` at ``Pipeline.run``, after serialising; ``ru_maxrss`` would
  include the parent's RSS at fork, which holds the expected paths: 370 MB after the 1 M case);
- end to end (N <= --e2e-max): the whole CLI run on the DirectRunner, then checks that every input
  has exactly one ``files/`` row (read back with pyarrow here, not by the project's code);
- ``--mode resume`` over that finished output: launcher time again (the job, not the launcher, reads files/).

It uses only public entry points: ``yamnet_beam.cli.main(["run", ...])`` and ``apache_beam.Pipeline.run``
(patched in the child to take the measurements), so it works whatever module layout the package has.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.procs import peak_rss_mb
from bench.scale_report import compare_table, fmt_row, table

HERE = Path(__file__).resolve().parent
DEFAULT_SHARED = Path(os.environ.get("YAMNET_BEAM_SHARED", "/work/shared"))
_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


# ------------------------------------------------------------------------------------------------
# Child: one CLI run, measured from inside


class _LauncherOnly(BaseException):
    """Raised from the patched Pipeline.run to stop after the launcher's work (not an Exception: nothing catches it)."""


def _child(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    t_import = time.perf_counter()
    import importlib

    import apache_beam as beam

    from yamnet_beam import cli  # the public entry point; everything else is behind it

    # The CLI imports the job lazily; import it here so "plan" is the launcher's work, not Python's imports.
    for name in ("yamnet_beam.job.pipeline", "yamnet_beam.pipeline"):
        try:
            importlib.import_module(name)
            break
        except ImportError:
            continue
    rec: dict[str, Any] = {"import_s": time.perf_counter() - t_import, "runs": [], "package": cli.__file__}
    original_run = beam.Pipeline.run
    t0 = 0.0

    def measured_run(self, *args, **kwargs):
        t_entry = time.perf_counter()
        rss_entry = peak_rss_mb()
        proto = self.to_runner_api().SerializeToString()
        t_proto = time.perf_counter()
        run_rec = {
            "plan_s": t_entry - t0,
            "proto_s": t_proto - t_entry,
            "proto_bytes": len(proto),
            "rss_at_run_mb": rss_entry,
            "rss_after_proto_mb": peak_rss_mb(),
        }
        del proto
        rec["runs"].append(run_rec)
        if spec["launcher_only"]:
            raise _LauncherOnly()
        result = original_run(self, *args, **kwargs)
        result.wait_until_finish()
        run_rec["job_s"] = time.perf_counter() - t_proto
        return result

    beam.Pipeline.run = measured_run
    t0 = time.perf_counter()
    try:
        rec["exit_code"] = cli.main(["run", *spec["argv"]])
    except _LauncherOnly:
        rec["exit_code"] = None
    rec["total_s"] = time.perf_counter() - t0
    rec["peak_rss_mb"] = peak_rss_mb()
    Path(spec["result"]).write_text(json.dumps(rec))
    return 0


# ------------------------------------------------------------------------------------------------
# Inputs


def _ids(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(_ID_CHARS, k=11)) for _ in range(n)]


def make_manifest(work: Path, n: int) -> tuple[Path, list[str]]:
    """A .txt manifest of ``n`` absolute paths that do not exist (each must become an io_error row)."""
    root = work / "missing"
    paths = [f"{root}/{i[0]}/{i}_{k % 7 * 10:03d}.flac" for k, i in enumerate(_ids(n, seed=n))]
    manifest = work / f"manifest_{n}.txt"
    if not manifest.exists():
        manifest.write_text("\n".join(paths) + "\n")
    return manifest, paths


def make_tree(work: Path, n: int, per_dir: int = 1000) -> tuple[Path, list[str]]:
    """A directory tree of ``n`` empty .wav files, ``per_dir`` per leaf directory, two levels deep."""
    root = work / f"tree_{n}"
    done = root / ".complete"
    paths = []
    for k in range(n):
        d = root / f"d{k // (per_dir * 10):03d}" / f"e{k // per_dir:05d}"
        paths.append(str(d / f"f{k:07d}.wav"))
    if not done.exists():
        for p in paths:
            Path(p).parent.mkdir(parents=True, exist_ok=True)
            Path(p).touch()
        done.touch()
    return root, paths


# ------------------------------------------------------------------------------------------------
# Parent


def _run_child(
    work: Path, argv: list[str], launcher_only: bool, timeout_s: float, code: Path = HERE.parent
) -> dict[str, Any]:
    spec = work / "child_spec.json"
    result = work / "child_result.json"
    result.unlink(missing_ok=True)
    spec.write_text(json.dumps({"argv": argv, "launcher_only": launcher_only, "result": str(result)}))
    # This checkout's package (or --against's), not whichever one is pip-installed.
    pythonpath = os.pathsep.join(p for p in (str(code), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": pythonpath}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--_child", str(spec)],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
        )
    except subprocess.TimeoutExpired:  # the child is killed; the row says so instead of a number
        return {"timeout_s": timeout_s, "runs": [], "total_s": timeout_s, "peak_rss_mb": float("nan")}
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not result.exists():
        raise RuntimeError(f"child failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    rec = json.loads(result.read_text())
    rec["process_wall_s"] = wall
    rec["summary_line"] = next((ln for ln in proc.stdout.splitlines() if "files matched" in ln), None)
    return rec


def _files_rows(output: Path) -> list[str]:
    """Every path in OUTPUT/files/, read with pyarrow (independent of the project's readers)."""
    import pyarrow.parquet as pq

    parts = sorted((output / "files").glob("*.parquet"))
    paths: list[str] = []
    for p in parts:
        paths += pq.read_table(p, columns=["path"]).column("path").to_pylist()
    return paths


def _account(output: Path, expected: list[str]) -> dict[str, Any]:
    rows = _files_rows(output)
    want = set(expected)
    got = set(rows)
    return {
        "rows": len(rows),
        "distinct": len(got),
        "missing": len(want - got),
        "unexpected": len(got - want),
        "ok": len(rows) == len(want) and got == want,
    }


def bench_case(
    work: Path,
    name: str,
    inputs: str,
    expected: list[str],
    common: list[str],
    e2e: bool,
    timeout_s: float,
    resume_timeout_s: float,
) -> list[dict[str, Any]]:
    out = work / f"out_{name}"
    shutil.rmtree(out, ignore_errors=True)
    argv = ["--input", inputs, "--output", str(out), *common]
    rows = []
    rec = _run_child(work, argv, launcher_only=True, timeout_s=timeout_s)
    rows.append({"case": name, "n": len(expected), "what": "launcher", **rec})
    print(fmt_row(rows[-1]), flush=True)
    if e2e:
        shutil.rmtree(out, ignore_errors=True)
        rec = _run_child(work, argv, launcher_only=False, timeout_s=timeout_s)
        if "timeout_s" not in rec:
            rec["accounting"] = _account(out, expected)
        rows.append({"case": name, "n": len(expected), "what": "end to end", **rec})
        print(fmt_row(rows[-1]), flush=True)
        rec = _run_child(work, [*argv, "--mode", "resume"], launcher_only=True, timeout_s=resume_timeout_s)
        rows.append({"case": name, "n": len(expected), "what": "resume launcher", **rec})
        print(fmt_row(rows[-1]), flush=True)
    shutil.rmtree(out, ignore_errors=True)
    return rows


def _one(work: Path, label: str, code: Path, argv: list[str], what: str, timeout_s: float) -> dict[str, Any]:
    load = os.getloadavg()[0]
    rec = _run_child(work, argv, launcher_only=what != "end to end", timeout_s=timeout_s, code=code)
    rec["load_before"] = load
    print(
        f"    {label:>4} {what:>15}: {fmt_row({'case': '', 'what': '', 'n': 0, **rec}).split(': ', 1)[1]}", flush=True
    )
    return rec


def compare(
    work: Path,
    cases: list[tuple[str, str, list[str]]],
    common: list[str],
    base: Path,
    repeats: int,
    e2e_max: int,
    timeouts: tuple[float, float],
) -> list[dict[str, Any]]:
    """This checkout against ``base`` (another checkout's root), interleaved ABBA per repeat, in one run.

    Per case: launcher only (``repeats`` times each), end to end (``repeats`` times each, up to ``e2e_max``
    inputs) and one ``--mode resume`` launcher over the first finished output. Both checkouts see the
    machine's load in turn, so the ratios hold on a shared machine where the seconds do not.
    """
    codes = {"new": HERE.parent, "base": base}
    rows = []
    for name, inputs, expected in cases:
        print(f"{name} {len(expected):,}", flush=True)
        rec: dict[str, Any] = {"case": name, "n": len(expected), "new": {}, "base": {}}
        whats = ["launcher", "end to end"] if len(expected) <= e2e_max else ["launcher"]
        for what in whats:
            for label in codes:
                rec[label][what] = []
            for r in range(repeats):
                for label in ("new", "base") if r % 2 == 0 else ("base", "new"):
                    out = work / f"cmp_{label}"
                    shutil.rmtree(out, ignore_errors=True)
                    argv = ["--input", inputs, "--output", str(out), *common]
                    one = _one(work, label, codes[label], argv, what, timeouts[0])
                    if what == "end to end" and "timeout_s" not in one:
                        one["accounting"] = _account(out, expected)
                        if "resume launcher" not in rec[label]:  # each checkout's first finished output
                            resume = [*argv, "--mode", "resume"]
                            rec[label]["resume launcher"] = [
                                _one(work, label, codes[label], resume, "resume launcher", timeouts[1])
                            ]
                    rec[label][what].append(one)
                    shutil.rmtree(out, ignore_errors=True)
        rows.append(rec)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000], help="manifest sizes")
    ap.add_argument("--tree", type=int, nargs="*", default=[100_000], help="directory tree sizes")
    ap.add_argument("--e2e-max", type=int, default=100_000, help="run end to end (and resume) only up to this N")
    ap.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "yamnet-beam-scale",
        help="scratch folder (inputs are kept for reuse)",
    )
    ap.add_argument("--model", default=str(DEFAULT_SHARED / "models" / "yamnet.tflite"))
    ap.add_argument("--class_map", default=str(DEFAULT_SHARED / "models" / "yamnet_class_map.csv"))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "scale_bench.json")
    ap.add_argument("--timeout", type=float, default=3600, help="per child run, seconds")
    ap.add_argument("--resume-timeout", type=float, default=600, help="per resume launcher run, seconds")
    ap.add_argument(
        "--against",
        type=Path,
        help="another checkout's root (e.g. `git archive main | tar -x -C DIR`): both measured, interleaved",
    )
    ap.add_argument("--repeats", type=int, default=2, help="with --against: runs per checkout and case")
    ap.add_argument("beam_args", nargs="*", help="extra flags for the run (after --), e.g. --direct_num_workers=2")
    args = ap.parse_args()
    if args._child:
        return _child(args._child)
    args.work.mkdir(parents=True, exist_ok=True)
    common = ["--model", args.model, "--class_map", args.class_map, *args.beam_args]
    rows: list[dict[str, Any]] = []
    meta = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "argv": sys.argv[1:]}
    timeouts = (args.timeout, args.resume_timeout)
    if args.against:
        cases = [("manifest", str(m), e) for m, e in (make_manifest(args.work, n) for n in args.sizes)]
        cases += [("directory tree", str(r), e) for r, e in (make_tree(args.work, n) for n in args.tree)]
        meta["against"] = str(args.against)
        meta["load_start"] = os.getloadavg()
        rows = compare(args.work, cases, common, args.against.resolve(), args.repeats, args.e2e_max, timeouts)
        meta["load_end"] = os.getloadavg()
        args.out.write_text(json.dumps({"meta": meta, "compare": rows}, indent=1))
        print()
        print(compare_table(rows))
        e2e = [x for r in rows for label in ("new", "base") for x in r[label].get("end to end", [])]
        return 0 if all(x.get("accounting", {}).get("ok") for x in e2e) else 1
    for n in args.sizes:
        manifest, expected = make_manifest(args.work, n)
        rows += bench_case(args.work, "manifest", str(manifest), expected, common, n <= args.e2e_max, *timeouts)
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))  # kept if a later case fails
    for n in args.tree:
        t = time.perf_counter()
        root, expected = make_tree(args.work, n)
        print(f"tree of {n} files ready in {time.perf_counter() - t:.1f} s", flush=True)
        rows += bench_case(args.work, "directory tree", str(root), expected, common, n <= args.e2e_max, *timeouts)
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print()
    print(table(rows))
    return 0 if all(r.get("accounting", {}).get("ok", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
