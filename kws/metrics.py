"""Classification metrics, shared by the trainer's reports and the benchmark: one definition each.

Accuracy and macro precision/recall/F1 follow sklearn's macro convention (classes that occur as
truth or as a prediction, zero_division=0); numpy only, no I/O, tested on known answers
(tests/test_bench_stats.py). The 12-class task is scored through kws.labels.to_12class.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from kws.labels import GSC12_LABELS, GSC_V2_WORDS, SILENCE, has_12class_words, to_12class


@dataclass(frozen=True)
class ClassificationMetrics:
    """Accuracy and macro-averaged precision/recall/F1 (sklearn's `average="macro"`, zero_division=0)."""

    n: int
    accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    per_class_precision: tuple[float, ...]
    per_class_recall: tuple[float, ...]
    per_class_f1: tuple[float, ...]
    support: tuple[int, ...]
    confusion: tuple[tuple[int, ...], ...]  # rows = true class, columns = predicted class
    n_unmapped: int  # predictions outside [0, n_classes): wrong for their true class, no class's FP

    def to_dict(self) -> dict:
        d = asdict(self)
        d["confusion"] = [list(r) for r in self.confusion]
        for k in ("per_class_precision", "per_class_recall", "per_class_f1", "support"):
            d[k] = list(d[k])
        return d


def _check_labels(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> None:
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be 1-D and of equal length")
    if y_true.size == 0:
        raise ValueError("no samples to score")
    if y_true.min() < 0 or y_true.max() >= n_classes:
        raise ValueError(f"y_true holds labels outside [0, {n_classes})")


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """int64 [n_classes, n_classes]; predictions outside the label range are left out (see n_unmapped)."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    _check_labels(t, p, n_classes)
    ok = (p >= 0) & (p < n_classes)
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (t[ok], p[ok]), 1)
    return cm


def per_class_scores(cm: np.ndarray, support: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, F1, present) per class of a confusion matrix (rows true, columns predicted).

    `present`: the classes a macro average runs over, those that occur as truth or as a
    prediction (sklearn's convention, zero_division=0), so a model that sprays an absent class
    is penalised rather than ignored. `support` defaults to the row sums.
    """
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1) if support is None else np.asarray(support)
    predicted = cm.sum(axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(predicted > 0, tp / predicted, 0.0)
        rec = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
    return prec, rec, f1, (support > 0) | (predicted > 0)


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> ClassificationMetrics:
    """Metrics over the classes that occur in y_true or y_pred (sklearn's macro convention).

    A class that is predicted but never true gets precision 0 and recall 0 (zero_division=0),
    so a model that sprays an absent class is penalised rather than ignored.
    """
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    cm = confusion_matrix(t, p, n_classes)
    support = np.bincount(t, minlength=n_classes)  # includes samples predicted as "unmapped"
    prec, rec, f1, present = per_class_scores(cm, support)
    return ClassificationMetrics(
        n=int(t.size),
        accuracy=float(np.mean(t == p)),
        macro_precision=float(prec[present].mean()),
        macro_recall=float(rec[present].mean()),
        macro_f1=float(f1[present].mean()),
        per_class_precision=tuple(float(v) for v in prec),
        per_class_recall=tuple(float(v) for v in rec),
        per_class_f1=tuple(float(v) for v in f1),
        support=tuple(int(v) for v in support),
        confusion=tuple(tuple(int(v) for v in row) for row in cm),
        n_unmapped=int(np.count_nonzero((p < 0) | (p >= n_classes))),
    )


def top1_agreement(pred_a: Sequence[int], pred_b: Sequence[int]) -> float:
    """Fraction of samples on which two models/backends give the same top-1 class."""
    a = np.asarray(pred_a)
    b = np.asarray(pred_b)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"top1_agreement needs two equal, non-empty prediction lists ({a.shape} vs {b.shape})")
    return float(np.mean(a == b))


def label_map(model_labels: Sequence[str], data_labels: Sequence[str]) -> np.ndarray:
    """Index into data_labels for each model output; -1 where a model class has no counterpart.

    A 35-word model scored on the 12-class task maps other words to `_unknown_` (kws.labels.to_12class).
    """
    index = {lab: i for i, lab in enumerate(data_labels)}
    out = np.full(len(model_labels), -1, dtype=np.int64)
    for i, lab in enumerate(model_labels):
        if lab in index:
            out[i] = index[lab]
        elif to_12class(lab) in index:
            out[i] = index[to_12class(lab)]
    return out


@dataclass(frozen=True)
class ScoringSpace:
    """Where a model's predictions and a data set's truth are compared."""

    name: str
    labels: tuple[str, ...]
    truth_map: np.ndarray  # data label index -> space index (-1: not scored)
    pred_map: np.ndarray  # model output index -> space index (-1: always wrong)


def scoring_space(model_labels: Sequence[str], data_labels: Sequence[str]) -> ScoringSpace:
    """The data set's labels, unless the model is a 12-class model and the data is word-level:
    then both go to the 12-class task (a 12-class model cannot name "cat", only "_unknown_")."""
    from kws.labels import GSC12_LABELS

    model, data = set(model_labels), set(data_labels)
    if not model <= data and model <= set(GSC12_LABELS) and data - set(GSC12_LABELS):
        space = tuple(GSC12_LABELS)
        return ScoringSpace("12-class task", space, label_map(data_labels, space), label_map(model_labels, space))
    return ScoringSpace(f"data labels ({len(data_labels)})", tuple(data_labels),
                        np.arange(len(data_labels), dtype=np.int64), label_map(model_labels, data_labels))


def score(space: ScoringSpace, y_data: Sequence[int], preds_model: Sequence[int]) -> ClassificationMetrics:
    """classification_metrics in `space`; clips whose truth has no place in it are left out."""
    t = space.truth_map[np.asarray(y_data, dtype=np.int64)]
    p = space.pred_map[np.asarray(preds_model, dtype=np.int64)]
    keep = t >= 0
    return classification_metrics(t[keep], p[keep], len(space.labels))


TIE = 1e-6  # probabilities this close are a tie: float rounding may order them either way


def top1_agreement_probs(ref: np.ndarray, got: np.ndarray, tie: float = TIE) -> float:
    """Share of rows whose top-1 matches, counting a row as agreeing when `got`'s pick scores within
    `tie` of the reference's best (an untrained model's near-uniform outputs are all ties).
    The streaming export's gate uses it; the full-window gate still counts exact argmax matches."""
    pick = np.asarray(got).argmax(1)
    ref = np.asarray(ref)
    rows = np.arange(len(ref))
    return float((ref[rows, ref.argmax(1)] - ref[rows, pick] <= tie).mean())


def maps_to_12(labels: Sequence[str], cm: np.ndarray) -> bool:
    """True for 35-word label sets (with or without silence) scored on clips that hold a word of
    the 12-class task: only those score on the 12-class task too (a digits-only test set would
    score 100 % by answering "unknown")."""
    present = [lab for lab, n in zip(labels, np.asarray(cm).sum(1)) if n > 0]
    return len(labels) > 12 and set(labels) <= set(GSC_V2_WORDS) | {SILENCE} and has_12class_words(present)


def to_12class_cm(cm: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Collapse a 35(s)-class confusion matrix through kws.labels.to_12class (argmax mapped)."""
    target = list(GSC12_LABELS)
    m = np.zeros((len(labels), len(target)), dtype=np.int64)
    for i, lab in enumerate(labels):
        m[i, target.index(to_12class(lab))] = 1
    return m.T @ np.asarray(cm, dtype=np.int64) @ m, target
