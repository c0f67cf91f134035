"""Run artefacts: per-epoch metrics CSV, plots, and the test report (JSON + Markdown).

Metrics are computed from a confusion matrix (rows = true, columns = predicted), the one
thing that all-reduces exactly across DDP processes.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kws.fsutil import atomic_path, atomic_write_json, atomic_write_text
from kws.metrics import maps_to_12, per_class_scores, to_12class_cm

METRICS_FILE = "metrics.csv"
METRICS_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "train_samples",
                   "epoch_s", "samples_per_s", "best")


def write_metrics(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    buf = io.StringIO()
    extra = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in METRICS_COLUMNS]  # e.g. train_kl
    w = csv.DictWriter(buf, fieldnames=[*METRICS_COLUMNS, *extra], lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.csv; RunFileError names the file and line of anything garbled."""
    from training.state import RunFileError

    if not path.is_file():
        return []
    ints = {"epoch", "train_samples", "best"}
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "epoch" not in reader.fieldnames:
                raise RunFileError(f"{path}: not a metrics file (no header with an epoch column)")
            rows = []
            for r in reader:
                if None in r or any(v is None for v in r.values()):
                    raise RunFileError(f"{path}: line {reader.line_num}: {len(reader.fieldnames)} columns expected")
                try:
                    rows.append({k: (int(v) if k in ints else float(v)) for k, v in r.items()})
                except ValueError as e:
                    raise RunFileError(f"{path}: line {reader.line_num}: {e}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise RunFileError(f"{path}: not a readable CSV file ({e})") from None
    return rows


def scores(cm: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1 and per-class scores from a confusion matrix (kws.metrics)."""
    cm = np.asarray(cm, dtype=np.int64)
    precision, recall, f1, present = per_class_scores(cm)
    support = cm.sum(1)
    n = int(cm.sum())
    return {
        "n": n,
        "accuracy": float(np.trace(cm) / n) if n else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "per_class": {lab: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                            "support": int(support[i])} for i, lab in enumerate(labels)},
    }


def build_report(cm: np.ndarray, labels: Sequence[str], info: dict[str, Any]) -> dict[str, Any]:
    rep = {**info, **scores(cm, labels), "labels": list(labels), "confusion": np.asarray(cm).tolist()}
    if maps_to_12(labels, cm):
        cm12, lab12 = to_12class_cm(cm, labels)
        s12 = scores(cm12, lab12)
        rep["gsc12"] = {"accuracy": s12["accuracy"], "macro_f1": s12["macro_f1"],
                        "per_class_recall": {k: v["recall"] for k, v in s12["per_class"].items()},
                        "confusion": cm12.tolist(), "labels": lab12}
    return rep


def report_markdown(rep: dict[str, Any]) -> str:
    lines = [f"# Test report: {rep.get('model', '?')} on {rep.get('data', '?')} ({rep.get('split', 'test')})", ""]
    for k in ("checkpoint", "epochs_trained", "stop_reason", "params"):
        if k in rep:
            lines.append(f"- {k.replace('_', ' ')}: {rep[k]}")
    if rep.get("skipped_files"):
        per = ", ".join(f"{s} {n}" for s, n in rep["skipped_files"].items() if n)
        lines.append(f"- skipped files: {sum(rep['skipped_files'].values())} ({per}; listed in skipped.json)")
    lines += [
        f"- clips: {rep['n']}",
        f"- **accuracy: {rep['accuracy']:.4f}**",
        f"- macro F1: {rep['macro_f1']:.4f}, macro precision: {rep['macro_precision']:.4f}, "
        f"macro recall: {rep['macro_recall']:.4f}",
    ]
    if "gsc12" in rep:
        lines.append(f"- **12-class accuracy (argmax mapped through to_12class): {rep['gsc12']['accuracy']:.4f}**, "
                     f"macro F1 {rep['gsc12']['macro_f1']:.4f}")
    lines += ["", "| class | precision | recall | F1 | support |", "| --- | ---: | ---: | ---: | ---: |"]
    for lab, s in rep["per_class"].items():
        lines.append(f"| {lab} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['support']} |")
    return "\n".join(lines) + "\n"


def write_report(run_dir: Path, rep: dict[str, Any]) -> None:
    atomic_write_json(run_dir / "report.json", rep)
    atomic_write_text(run_dir / "report.md", report_markdown(rep))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers, and never a Qt window from a training job
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_curves(rows: Sequence[dict[str, Any]], path: Path) -> None:
    plt = _pyplot()
    ep = [r["epoch"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, style in (("train_loss", "-"), ("val_loss", "--")):
        a.plot(ep, [r[key] for r in rows], style, marker=".", label=key.split("_")[0])
    for key, style in (("train_acc", "-"), ("val_acc", "--")):
        b.plot(ep, [r[key] for r in rows], style, marker=".", label=key.split("_")[0])
    a.set(xlabel="epoch", ylabel="loss", title="loss")
    b.set(xlabel="epoch", ylabel="accuracy", title="accuracy (train: mixed batches vs dominant label)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path)
    plt.close(fig)


def plot_confusion(cm: np.ndarray, labels: Sequence[str], path: Path, title: str) -> None:
    import seaborn as sns

    plt = _pyplot()
    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)  # row-normalised: recall on the diagonal
    size = max(5.0, 0.32 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    sns.heatmap(norm, vmin=0, vmax=1, cmap="viridis", square=True, ax=ax, xticklabels=labels,
                yticklabels=labels, cbar_kws={"label": "fraction of true class"})
    ax.set(xlabel="predicted", ylabel="true", title=title)
    _save(fig, path)
    plt.close(fig)
