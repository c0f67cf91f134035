"""The accuracy sections: one table per data set, and the confusion matrix of the best model.

The confusion is drawn on real speech when the run has it (a synthetic set's confusion says
little about real use, and the caption says so when there is no other).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.report.base import (
    Plot, Runs, _img, _plt, _run_ids, _save, _sets_text, is_real_speech, md_table, primary_dataset,
)
from bench.report.sanity import twelve_class_valid


def accuracy_table(runs: Runs, dataset: str) -> pd.DataFrame:
    acc = runs.df("accuracy")
    if acc.empty:
        return pd.DataFrame()
    a = acc[acc.dataset == dataset]
    labels = next((d.get("labels") or [] for d in runs.datasets() if d["name"] == dataset), [])
    rows = [{"model": r["model"], "backend": r["backend"], "scored on": r.get("scored_on"),
             "clips": r["n"], "accuracy": r["accuracy"],
             # on clips without any 12-class word the figure is meaningless: not printed (a sanity warning)
             "12-class acc": r.get("accuracy_12class") if twelve_class_valid(r, labels) else None,
             "macro F1": r["macro_f1"], "precision": r["macro_precision"], "recall": r["macro_recall"],
             "agree fp32": r.get("top1_agreement")} for r in a.to_dict("records")]
    df = pd.DataFrame(rows)
    if not df.empty and df["12-class acc"].isna().all():
        df = df.drop(columns="12-class acc")
    return df


def best_confusion(runs: Runs, dataset: str | None) -> tuple[str, str, list[str], np.ndarray] | None:
    """(model, backend, labels, confusion) of the most accurate pair on `dataset`."""
    acc = runs.df("accuracy")
    if acc.empty or dataset is None:
        return None
    a = acc[acc.dataset == dataset].sort_values(["accuracy", "top1_agreement"], ascending=False)
    if a.empty:
        return None
    best = a.iloc[0]
    labels = next((d["labels"] for d in runs.datasets() if d["name"] == dataset), None)
    cm = np.asarray(best["confusion"], dtype=np.int64)
    if labels is None or len(labels) != cm.shape[0]:
        labels = [str(i) for i in range(cm.shape[0])]
    return best["model"], best["backend"], list(labels), cm


def section(runs: Runs, plots: dict[str, Plot], base: Path) -> list[str]:
    L = []
    for d in runs.datasets():
        L += [f"### Accuracy on {d['name']}", "", md_table(accuracy_table(runs, d["name"]), 4), ""]
    return L + ["### Confusion matrix of the best model", "", _img(plots, "confusion", "confusion matrix", base), ""]


def confusion_dataset(runs: Runs) -> tuple[str | None, str]:
    """The data set the best model's confusion is drawn on: real speech when the run has it, and why."""
    acc = runs.df("accuracy")
    scored = set(acc.dataset) if not acc.empty and "dataset" in acc else set()
    real = [d["name"] for d in runs.datasets() if is_real_speech(d) and d["name"] in scored]
    if real:
        return real[0], ""
    ds = primary_dataset(runs)
    return ds, (f"**No real-speech data set in this run** (the report wants recordings, e.g. gsc12-dev): the "
                f"confusion matrix below is on {ds}, which is synthetic speech, and says little about real use.")


def plot_confusion(runs: Runs, out: Path) -> Plot | None:
    plt, sns = _plt()
    ds, note = confusion_dataset(runs)
    best = best_confusion(runs, ds)
    if best is None:
        return None
    model, backend, labels, full = best
    # Only the classes that occur (as truth or as an answer): on a small real set most of the 36
    # would be empty rows that read as "never recognised".
    keep = np.flatnonzero((full.sum(0) + full.sum(1)) > 0)
    cm = full[np.ix_(keep, keep)]
    names = [f"{labels[k]} ({int(full[k].sum())})" for k in keep]
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(keep)
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * n + 3), max(5, 0.28 * n + 2)))
    sns.heatmap(norm, cmap="Blues", vmin=0, vmax=1, xticklabels=[labels[k] for k in keep], yticklabels=names,
                ax=ax, cbar_kws={"label": "fraction of the true class"}, annot=n <= 14, fmt=".2f")
    ax.tick_params(labelsize=8 if n > 14 else 10)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (clips)")
    acc = float(np.trace(full) / max(full.sum(), 1))
    ax.set_title(f"best model on {ds}: {model} / {backend}\naccuracy {acc:.3f} on {int(full.sum())} clips", pad=14)
    caption = (f"Row-normalised confusion matrix of the most accurate model x backend on {_sets_text(runs, [ds])}: "
               f"{model} / {backend}; classes that occur neither as truth nor as an answer are left out. "
               f"Run {_run_ids(runs)}.")
    if note:
        caption = f"{note} {caption}"
    return _save(fig, out, caption, runs)
