"""What a trained head measured: clip-level metrics, the terminal summary and the confusion-matrix picture."""

from __future__ import annotations

import io
import logging
from typing import Any, Protocol

import numpy as np

from yamnet_beam.customize.learn import sklearn_module
from yamnet_beam.model.head import Head

_LOG = logging.getLogger(__name__)
METRICS_JSON = "metrics.json"
CONFUSION_PNG = "confusion.png"


class Labelled(Protocol):
    """What the metrics need of a labelled set (:class:`yamnet_beam.customize.train.LabelledSet`)."""

    classes: list[str]
    targets: np.ndarray  # [files, classes] 0/1
    multilabel: bool


def clip_metrics(data: Labelled, clip_scores: np.ndarray, thresholds: list[float]) -> dict[str, Any]:
    """Clip-level metrics from mean held-out frame probabilities per file."""
    m = sklearn_module("metrics")
    k = len(data.classes)
    if data.multilabel:
        pred = (clip_scores >= np.asarray(thresholds)[None, :]).astype(int)
        p, r, f, s = m.precision_recall_fscore_support(data.targets, pred, zero_division=0)
        out = {
            "mAP": float(m.average_precision_score(data.targets, clip_scores, average="macro")),
            "macro_f1": float(f.mean()),
        }
    else:
        truth, pred = data.targets.argmax(axis=1), clip_scores.argmax(axis=1)
        p, r, f, s = m.precision_recall_fscore_support(truth, pred, labels=list(range(k)), zero_division=0)
        out = {
            "accuracy": float(m.accuracy_score(truth, pred)),
            "macro_f1": float(f.mean()),
            "confusion_matrix": m.confusion_matrix(truth, pred, labels=list(range(k))).tolist(),
        }
    out["per_class"] = {
        c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, c in enumerate(data.classes)
    }
    return out


def confusion_png(metrics: dict[str, Any], classes: list[str], path: str, fs) -> None:
    """The confusion matrix as a PNG when matplotlib (the ``viz`` extra) is installed; skipped otherwise."""
    cm = metrics["clip"].get("confusion_matrix")
    if cm is None:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _LOG.info('no matplotlib: %s not drawn (pip install "yamnet-beam[viz]")', CONFUSION_PNG)
        return
    n = len(classes)
    fig, ax = plt.subplots(figsize=(2 + 0.6 * n, 1.5 + 0.6 * n))
    ax.imshow(np.asarray(cm), cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted (clip)")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i][j]), ha="center", va="center")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    fs.pipe(path, buf.getvalue())


def format_metrics(head: Head) -> str:
    """A short text summary for the terminal."""
    clip = head.metrics["clip"]
    lines = [f"head {head.name!r}: {head.num_classes} classes ({head.activation}), {head.metrics['files']} files"]
    for key in ("accuracy", "mAP", "macro_f1"):
        if key in clip:
            lines.append(f"  clip {key}: {clip[key]:.3f}")
    lines.append("  class                 precision recall  f1     support threshold")
    for c, t in zip(head.classes, head.thresholds, strict=True):
        pc_ = clip["per_class"][c]
        lines.append(
            f"  {c:20s}  {pc_['precision']:.3f}     {pc_['recall']:.3f}   {pc_['f1']:.3f}  {pc_['support']:7d} {t:.3f}"
        )
    return "\n".join(lines)
