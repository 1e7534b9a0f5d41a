"""Mutation score of the modules that decide what is written and when: a benchmark of the tests, not a gate.

    python benchmarks/mutation.py                 # every module below; prints the score and each survivor
    python benchmarks/mutation.py --only framing  # one module
    YAMNET_BEAM_SHARED=/path/to/shared is needed as for the suite (the crash-safety tests run the real job)

It runs mutmut (a maintained mutation tester from PyPI, ``pip install -e ".[mutation]"``) in a scratch copy of the
repository (``--workdir``, default a temporary directory), so the work tree is never touched: mutmut
changes one operator, constant or call at a time in the modules listed in MODULES, runs the tests that
reach the mutated function, and counts the mutant as killed when a test fails. A surviving mutant is a
change no test notices: either a missing test, or an equivalent mutant (the same behaviour; e.g. a
log message's wording). Survivors are printed with their diffs (``--diffs``) so they can be judged.

Score = killed / (killed + survived); timeouts count as killed (the mutant hung the code), mutants no
selected test reaches count as survivors ("no tests").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# module -> the tests that pin it (fast ones: mutmut reruns the ones that reach each mutant)
MODULES = {
    "framing": (
        "yamnet_beam/framing.py",
        ["tests/test_framing.py", "tests/test_framing_edges.py", "tests/job/test_segments.py"],
    ),
    "parts": (
        "yamnet_beam/job/parts.py",
        [
            "tests/job/test_parts.py",
            "tests/job/test_limits.py",
            "tests/job/test_parts_details.py",
            "tests/job/test_part_writer_faults.py",
        ],
    ),
    "calibrate": ("yamnet_beam/customize/calibrate.py", ["tests/customize/test_calibrate.py"]),
    "head": ("yamnet_beam/customize/head.py", ["tests/customize/test_head_scores.py"]),
}
PURE_BOUNDARIES = "tests/customize/test_boundaries.py"  # its pure tests pin calibrate and head labels too


def _setup_cfg(names: list[str]) -> str:
    paths = [MODULES[n][0] for n in names]
    tests = sorted({t for n in names for t in MODULES[n][1]} | {PURE_BOUNDARIES})
    lines = [
        "[mutmut]",
        "source_paths=yamnet_beam",
        "only_mutate=",
        *(f"    {p}" for p in paths),
        "also_copy=",
        "    tests",
        "    pyproject.toml",
        "    README.md",
        "pytest_add_cli_args_test_selection=",
        *(f"    {t}" for t in tests),
        "pytest_add_cli_args=",
        "    -p",
        "    no:randomly",
        "    -p",
        "    no:cacheprovider",
        "    -k",
        "    not train_ and not class_in_one_fold",  # the end-to-end train tests need a whole pipeline run each
        "timeout_multiplier=4.0",  # a mutant that runs 4x longer than the clean tests hangs: killed
        "do_not_mutate_patterns=",
        r"    _LOG\.",
    ]
    return "\n".join(lines) + "\n"


def _copy(workdir: Path) -> None:
    ignore = shutil.ignore_patterns(".git", ".venv", "mutants", "__pycache__", "*.egg-info", ".ruff_cache")
    for name in ["yamnet_beam", "tests"]:
        shutil.copytree(REPO / name, workdir / name, ignore=ignore)
    for name in ["pyproject.toml", "README.md", "setup.py"]:
        if (REPO / name).exists():
            shutil.copy(REPO / name, workdir / name)


def _results(workdir: Path) -> dict[str, str]:
    """mutant name -> status, from ``mutmut results --all true``."""
    res = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    )
    out = {}
    for line in res.stdout.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name:
            out[name] = status.strip()
    return out


def _module_of(mutant: str) -> str:
    for n, (path, _) in MODULES.items():
        if mutant.startswith(path.removesuffix(".py").replace("/", ".") + "."):
            return n
    return "?"


KILLED = {"killed", "timeout", "segfault", "suspicious"}
UNCOUNTED = {"skipped", "not checked"}  # not run (yet): an interrupted run resumes where it stopped


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=sorted(MODULES), default=sorted(MODULES))
    ap.add_argument("--workdir", help="scratch copy (kept); default: a temporary directory, removed after")
    ap.add_argument("--max-children", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--diffs", action="store_true", help="print each survivor's diff")
    ap.add_argument("--json", help="also write the counts and survivors to this file")
    args = ap.parse_args(argv)
    tmp = None
    if args.workdir:
        workdir = Path(args.workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="yamnet-beam-mutation-")
        workdir = Path(tmp)
    try:
        if not (workdir / "yamnet_beam").exists():
            _copy(workdir)
        (workdir / "setup.cfg").write_text(_setup_cfg(args.only))
        (workdir / "pyproject.toml").write_text(
            "\n".join(
                line
                for line in (REPO / "pyproject.toml").read_text().splitlines()
                if not line.startswith("addopts")  # the suite's -m/timeout options; mutmut passes its own
            )
            + "\n"
        )
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        t0 = time.perf_counter()
        run = subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children)],
            cwd=workdir,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - t0
        if run.returncode not in (0, 1):
            print(f"mutmut run failed ({run.returncode}); see {workdir}", file=sys.stderr)
            return 2
        statuses = _results(workdir)
        by_module: dict[str, Counter] = {}
        survivors: list[str] = []
        for name, status in sorted(statuses.items()):
            by_module.setdefault(_module_of(name), Counter())[status] += 1
            if status not in KILLED and status not in UNCOUNTED:
                survivors.append(name)
        print(f"mutation score ({wall:.0f} s, mutmut in {workdir}):")
        total_k = total_n = 0
        for module, counts in sorted(by_module.items()):
            k = sum(counts[s] for s in KILLED)
            n = k + sum(v for s, v in counts.items() if s not in KILLED and s not in UNCOUNTED)
            total_k, total_n = total_k + k, total_n + n
            detail = ", ".join(f"{s} {v}" for s, v in sorted(counts.items()))
            print(f"  {module:10s} {k:4d}/{n:<4d} killed = {k / n if n else 0:6.1%}   ({detail})")
        print(f"  {'all':10s} {total_k:4d}/{total_n:<4d} killed = {total_k / total_n if total_n else 0:6.1%}")
        print(f"survivors ({len(survivors)}):")
        for name in survivors:
            print(f"  {name}: {statuses[name]}")
            if args.diffs:
                diff = subprocess.run(
                    [sys.executable, "-m", "mutmut", "show", name], cwd=workdir, capture_output=True, text=True
                ).stdout
                print("    " + diff.strip().replace("\n", "\n    "))
        if args.json:
            Path(args.json).write_text(
                json.dumps({"modules": {m: dict(c) for m, c in by_module.items()}, "survivors": survivors}, indent=2)
            )
        return 0
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
