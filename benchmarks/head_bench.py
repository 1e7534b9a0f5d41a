"""Does a training choice help the head? Cross-validated clip accuracy / macro-F1 on the same folds, with and without.

Measured on the demo's labelled set (:func:`yamnet_beam.demo.make_labelled_audio`: 4 classes x 6 files, 3 s)
and on two harder variants where each file's sound sits at a random place in 9 s of padding, so two thirds of
its frames carry the file's label without its sound: digital silence (YAMNet: "Silence", score 1.0) and a
-60 dBFS white-noise floor (YAMNet's top score there is ~0.3). Each set is run through the real pipeline once
(cached in ``--cache``); then, for every fold seed, every variant is cross-validated on the *same* file folds
(stratified K-fold over files, as ``train`` does) with the default linear head:

- ``baseline``: every frame, as ``train`` with its defaults;
- ``min_frame_score T``: fit only on frames whose top YAMNet score is >= T (``train --min_frame_score T``).
  Two figures: "kept", clips decided by the mean over the kept frames (what ``train`` reports), and "all",
  clips decided by the mean over all their frames (what ``query top --head`` and ``pool`` compute afterwards);
- ``no Silence frames``: fit only on frames whose top YAMNet label is not "Silence" ("kept" and "all" as above);
- ``noise 0.2``: TFLite Model Maker's augmentation, Gaussian noise (sigma 0.2) on the raw embeddings while
  fitting (``--copies`` noisy copies of each training frame in place of the clean ones), and, to tell whether
  that is more than regularisation, ``C 0.1``: no noise, ten times stronger L2 than the default.

Usage: ``python benchmarks/head_bench.py [--seeds 3] [--folds 5] [--cache benchmarks/.cache/head_bench]``
(~30-40 min on 2 shared cores, most of it the noise variant). Prints a Markdown table (mean over the seeds,
min-max in brackets; "files left out": files with no frame to decide by). Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf

from yamnet_beam.analysis.output import open_output
from yamnet_beam.customize.metrics import clip_metrics
from yamnet_beam.customize.train import Fitted, file_folds, load_labelled
from yamnet_beam.demo import make_labelled_audio
from yamnet_beam.job.pipeline import run

REPO = Path(__file__).resolve().parents[1]
SR = 16000
PAD_SECONDS = 9.0
PARAMS = {"C": 1.0, "alpha": 1e-4, "hidden": 256, "max_iter": 1000, "seed": 0}


def make_sets(cache: Path) -> dict[str, Path]:
    """The demo set and its two padded variants (WAVs + labels.csv each); returns set name -> CSV."""
    demo = make_labelled_audio(cache / "audio" / "demo")
    sets = {"demo": demo}
    rows = demo.read_text().splitlines()
    for name, floor in (("silence-padded", 0.0), ("noise-floor-padded", 1e-3)):
        d = cache / "audio" / name
        d.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(13)
        for row in rows[1:]:
            wav = row.split(",")[0]
            x, _ = sf.read(demo.parent / wav, dtype="float32")
            y = (floor * rng.standard_normal(int(PAD_SECONDS * SR))).astype(np.float32)
            at = int(rng.integers(0, len(y) - len(x)))
            y[at : at + len(x)] += x
            sf.write(d / wav, y, SR, subtype="FLOAT")
        (d / "labels.csv").write_text(demo.read_text())
        sets[name] = d / "labels.csv"
    return sets


def embed(csv: Path, out: Path, model: str, class_map: str) -> None:
    if (out / "manifest.json").exists():
        return
    run(["--input", str(csv.parent), "--output", str(out), "--model", model, "--class_map", class_map])


@dataclass
class Frames:
    """Per labelled file (train's order): embeddings, top YAMNet score and whether YAMNet's top label is Silence."""

    emb: list[np.ndarray]
    top: list[np.ndarray]
    silence: list[np.ndarray]


def read_frames(out: Path, paths: list[str]) -> Frames:
    t = pq.read_table(out / "frames", columns=["path", "frame", "embedding", "top_score", "top_label"])
    t = t.sort_by([("path", "ascending"), ("frame", "ascending")])
    p = np.asarray(t.column("path").to_pylist())
    emb = np.stack(t.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
    top = t.column("top_score").to_numpy()
    sil = np.asarray(t.column("top_label").to_pylist()) == "Silence"
    return Frames([emb[p == q] for q in paths], [top[p == q] for q in paths], [sil[p == q] for q in paths])


@dataclass
class Variant:
    label: str
    fit: list[np.ndarray]  # per file, the frames fitted on
    decide: list[np.ndarray] | None = None  # per file, the frames averaged for the clip (None: all of them)
    noise: float = 0.0
    c: float = 1.0


def cv(data, frames: Frames, fold_of_file, v: Variant, copies: int, seed: int) -> list[np.ndarray]:
    """Held-out frame probabilities for every frame of every file, from models fitted on ``v.fit``'s frames."""
    k = len(data.classes)
    heldout = [np.zeros((len(e), k)) for e in frames.emb]
    rng = np.random.default_rng(seed)
    for f in np.unique(fold_of_file):
        train = [i for i in range(len(frames.emb)) if fold_of_file[i] != f]
        x = np.concatenate([frames.emb[i][v.fit[i]] for i in train])
        y = np.concatenate([np.repeat(data.targets[i][None], v.fit[i].sum(), axis=0) for i in train])
        if v.noise:
            x = np.concatenate([x + v.noise * rng.standard_normal(x.shape).astype(np.float32) for _ in range(copies)])
            y = np.concatenate([y] * copies)
        fitted = Fitted(x, y, "linear", data.multilabel, {**PARAMS, "C": v.c})
        for i in np.flatnonzero(fold_of_file == f):
            heldout[i] = fitted.predict_proba(frames.emb[i], k)
    return heldout


def clip_accuracy_f1(data, heldout: list[np.ndarray], decide: list[np.ndarray] | None) -> tuple[float, float, int]:
    """Clip accuracy and macro-F1 (train's clip_metrics) of mean held-out probabilities over the ``decide`` frames.

    Files with no such frame are left out, as ``train`` leaves out a file none of whose frames reach
    ``--min_frame_score``; their count is returned.
    """
    keep = [i for i in range(len(heldout)) if decide is None or decide[i].any()]
    scores = np.stack([heldout[i][slice(None) if decide is None else decide[i]].mean(axis=0) for i in keep])
    sub = replace(data, paths=[data.paths[i] for i in keep], targets=data.targets[keep])
    m = clip_metrics(sub, scores, [0.5] * len(data.classes))
    return m["accuracy"], m["macro_f1"], len(heldout) - len(keep)


def variants_of(frames: Frames, thresholds: list[float], copies: int) -> list[Variant]:
    every = [np.ones(len(e), bool) for e in frames.emb]
    out = [Variant("baseline", every)]
    for t in thresholds:
        keep = [s >= t for s in frames.top]
        out += [Variant(f"min_frame_score {t} (kept)", keep, keep), Variant(f"min_frame_score {t} (all)", keep)]
    not_silence = [~s for s in frames.silence]
    out += [
        Variant("no Silence frames (kept)", not_silence, not_silence),
        Variant("no Silence frames (all)", not_silence),
    ]
    out += [Variant(f"noise 0.2 x{copies}", every, noise=0.2), Variant("C 0.1 (stronger L2, no noise)", every, c=0.1)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="fold shuffles (default 3)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--copies", type=int, default=4, help="noisy copies per frame for the noise variant (default 4)")
    ap.add_argument("--cache", type=Path, default=REPO / "benchmarks" / ".cache" / "head_bench")
    shared = Path(os.environ.get("YAMNET_BEAM_SHARED", REPO.parent / "shared"))
    ap.add_argument("--model", default=str(shared / "models" / "yamnet.tflite"))
    ap.add_argument("--class_map", default=str(shared / "models" / "yamnet_class_map.csv"))
    ap.add_argument("--thresholds", default="0.3,0.6", help="min_frame_score values (default 0.3,0.6)")
    args = ap.parse_args()
    if not Path(args.model).is_file():
        sys.exit(f"missing {args.model}: pass --model/--class_map or set YAMNET_BEAM_SHARED")
    thresholds = [float(t) for t in args.thresholds.split(",")]
    sets = make_sets(args.cache)
    print(f"linear head, {args.folds}-fold CV over files, {args.seeds} fold seeds: mean [min-max] over the seeds")
    print("| set | variant | frames fitted | files left out | clip accuracy | macro-F1 |")
    print("|---|---|---:|---:|---:|---:|", flush=True)
    for name, csv in sets.items():
        out = args.cache / "out" / name
        embed(csv, out, args.model, args.class_map)
        data = load_labelled(open_output(str(out)), str(csv), args.folds)
        frames = read_frames(out, data.paths)
        variants = variants_of(frames, thresholds, args.copies)
        results: dict[str, list[tuple[float, float, int]]] = {v.label: [] for v in variants}
        for seed in range(args.seeds):
            folds = file_folds(data, args.folds, seed)  # the same folds for every variant
            fitted: dict[tuple, list[np.ndarray]] = {}  # variants fitted on the same frames share the CV
            for v in variants:
                key = (id(v.fit), v.noise, v.c)
                if key not in fitted:
                    fitted[key] = cv(data, frames, folds, v, args.copies, seed)
                results[v.label].append(clip_accuracy_f1(data, fitted[key], v.decide))
        n_frames = sum(len(e) for e in frames.emb)
        for v in variants:
            acc, f1, left = np.asarray(results[v.label]).T
            spread = [f"{x.mean():.3f} [{x.min():.2f}-{x.max():.2f}]" for x in (acc, f1)]
            fit = f"{sum(int(m.sum()) for m in v.fit)}/{n_frames}"
            print(f"| {name} | {v.label} | {fit} | {int(left.max())} | {spread[0]} | {spread[1]} |", flush=True)


if __name__ == "__main__":
    main()
