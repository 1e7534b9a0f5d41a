"""The package's layering: each stage imports only what is below it, and the notebook layers stay light.

audio, model, table, index, framing and uris must import neither Beam nor DuckDB nor matplotlib (checked in a fresh
interpreter, where nothing else has imported them); and no module imports a stage above its own
(checked statically over every ``import`` in the package, lazy ones inside functions included).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "yamnet_beam"
HEAVY = ("apache_beam", "duckdb", "matplotlib")

# The layers, bottom first: a stage may import any stage of a lower layer, none of its own or a higher one.
# (README's Development tree repeats this.) cli and demo stand on top of them all.
LAYERS = (
    ("errors", "framing", "uris", "versions", "deprecated"),  # foundations, no I/O: versions reads package
    # metadata; deprecated holds the earlier flag spellings the options and the command line share
    ("audio", "model"),  # audio files to samples; the model and its heads (no Beam)
    ("table",),  # the output directory every stage shares: schemas, layout, commits, lease
    ("index",),  # the ANN index's shards beside the table: build one, search them, staleness (no Beam)
    ("job", "analysis"),  # writing an output (Beam); reading one (DuckDB)
    ("customize",),  # training, calibrating and exporting heads from an output
    ("explore",),  # the local web app: search, listen, label, train, re-rank
)
ALLOWED = {stage: {s for lower in LAYERS[:i] for s in lower} for i, layer in enumerate(LAYERS) for stage in layer}


def _stage(module: str) -> str:
    """``yamnet_beam.job.pipeline`` -> ``job``; top-level modules are their own stage."""
    return module.split(".")[1]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path) -> set[str]:
    """Every yamnet_beam module ``path`` imports, lazily or not (``from yamnet_beam.table import schema`` included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("yamnet_beam.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("yamnet_beam"):
            if node.module == "yamnet_beam":
                found |= {f"yamnet_beam.{a.name}" for a in node.names}
            else:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in _modules()}
    return found


LAYERED = sorted(m for m in _modules() if m.count(".") >= 1 and _stage(m) in ALLOWED)


@pytest.mark.parametrize("module", LAYERED)
def test_no_module_imports_a_stage_above_its_own(module: str) -> None:
    stage = _stage(module)
    for imported in _imports(_modules()[module]):
        other = _stage(imported)
        if other == stage or imported == "yamnet_beam":
            continue
        allowed = ALLOWED[stage]
        assert other in allowed, f"{module} imports {imported}: {stage}/ may import only {sorted(allowed)}"


def test_the_layout_rules_see_every_stage() -> None:
    """A new top-level module or subpackage must be given its place in ALLOWED (or be cli/demo, the top)."""
    stages = {_stage(m) for m in _modules() if m != "yamnet_beam"}
    assert stages - set(ALLOWED) == {"cli", "demo"}


@pytest.mark.parametrize(
    "module",
    [
        "yamnet_beam.audio",
        "yamnet_beam.model",
        "yamnet_beam.framing",
        "yamnet_beam.uris",
        "yamnet_beam.versions",
        "yamnet_beam.table",
        "yamnet_beam.index",
    ],
)
def test_notebook_layers_import_no_beam_duckdb_or_matplotlib(module: str) -> None:
    """Importing a notebook layer (and every module in it) in a fresh interpreter loads none of the heavy stacks."""
    submodules = [m for m in _modules() if m == module or m.startswith(module + ".")]
    code = (
        "import importlib, json, sys\n"
        f"for m in {submodules!r}: importlib.import_module(m)\n"
        f"print(json.dumps(sorted(h for h in {HEAVY!r} if h in sys.modules)))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent, check=True)
    assert json.loads(res.stdout) == []
